"""The Fitzpatrick17k downloader against a local HTTP server on 127.0.0.1."""

import http.server
import threading

import pytest

from multimodal.data.sources.download import download_all
from scripts_helper import run_script


class Handler(http.server.BaseHTTPRequestHandler):
    hits: dict = {}

    def do_GET(self):  # noqa: N802 - http.server's naming
        n = Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        if self.path == "/flaky.jpg" and n < 3:
            self.send_error(503)
        elif self.path in ("/ok.jpg", "/flaky.jpg"):
            body = b"\xff\xd8 fake jpeg " + self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Handler.hits = {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_retries_resume_and_failure_report(server, tmp_path):
    rows = [("a", f"{server}/ok.jpg"), ("b", f"{server}/flaky.jpg"), ("c", f"{server}/gone.jpg"),
            ("d", "")]
    result = download_all(rows, str(tmp_path), workers=2, retries=3, backoff=0.01)
    assert (result["done"], result["skipped"], result["failed"]) == (2, 0, 2)
    assert (tmp_path / "b.jpg").read_bytes().endswith(b"/flaky.jpg")
    assert Handler.hits["/flaky.jpg"] == 3 and Handler.hits["/gone.jpg"] == 1  # 404: no retry
    report = (tmp_path / "download_failures.csv").read_text()
    assert "c," in report and "HTTP 404" in report and "no URL" in report
    assert not list(tmp_path.glob("*.part"))
    again = download_all(rows, str(tmp_path), workers=2, retries=0, backoff=0.01)
    assert again["skipped"] == 2 and Handler.hits["/ok.jpg"] == 1  # resumed, not refetched


def test_script_reads_the_fitzpatrick_csv(server, tmp_path):
    csv = tmp_path / "f.csv"
    csv.write_text("md5hash,fitzpatrick_scale,label,url\n"
                   f"aa,1,x,{server}/ok.jpg\nbb,2,y,{server}/gone.jpg\n")
    out = run_script("download_fitzpatrick17k.py", "--csv", str(csv), "--out", str(tmp_path / "img"),
                     "--retries", "0", check=False)
    assert out.returncode == 1 and "downloaded 1" in out.stdout and "failed 1" in out.stdout
    assert (tmp_path / "img" / "aa.jpg").exists()
