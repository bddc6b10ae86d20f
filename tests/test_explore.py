from scripts_helper import run_script


def test_explore_sample_writes_plots_and_summary(tmp_path):
    run_script("explore.py", "--config", "configs/ham10000_sample.yaml", "--out", str(tmp_path))
    for name in ("classes", "age", "sex", "localization", "images_per_group"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    summary = (tmp_path / "summary.md").read_text()
    assert "503 images, 375 groups, 7 classes" in summary
    assert "ISIC_0024366" in summary and "ISIC_0029861" in summary  # identical pair found
