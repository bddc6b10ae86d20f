"""Training-curve plot from the per-epoch history (the keys either task records)."""

from __future__ import annotations


def plot_curves(history: list[dict], path: str) -> None:
    if not history:
        return
    # imported here: matplotlib is a second of every training script's start-up otherwise
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    for key, label in (("val_log_loss", "val log loss"), ("val_loss", "val loss")):
        if key in history[0]:
            ax1.plot(epochs, [h[key] for h in history], "o-", label=label)
    ax1.set_xlabel("epoch")
    ax1.legend()
    ax1.set_title("Loss")
    for key, label in (("train_accuracy", "train accuracy"), ("val_accuracy", "val accuracy"),
                       ("val_balanced_accuracy", "val balanced accuracy"),
                       ("val_macro_auc", "val macro AUC"), ("train_dice", "train Dice (batch)"),
                       ("val_dice", "val Dice"), ("val_iou", "val IoU")):
        if key in history[0]:
            ax2.plot(epochs, [h[key] for h in history], "o-", label=label)
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("epoch")
    ax2.legend(fontsize=8)
    ax2.set_title("Metrics")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
