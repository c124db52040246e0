#!/usr/bin/python3
"""The plain PyTorch peer of `fundus train` and `fundus embed`: the same network (bench_model.py:
spatial attention, MobileNetV2 on three views, mirror attention, GeM, L2) trained with the fine triplet
loss (bench_loss_peer.py) and used to embed, from the JPEG files of a fundus manifest, the way a
research script does it: PIL decode + resize in a torch DataLoader, shuffled batches, Adam.

  /usr/bin/python3 bench/peer_pipeline.py train --manifest M.csv --split train --epochs 1
  /usr/bin/python3 bench/peer_pipeline.py embed --manifest M.csv

Prints one JSON line: images, seconds of the step loop, images per second (the first batch, which
includes start-up, is left out of the rate as fundus does), wall seconds of the process so far and
peak resident memory of this process plus its DataLoader workers. Thread settings come from the
caller (OMP_NUM_THREADS, OMP_WAIT_POLICY) and --threads, the same as the fundus side.
"""
import argparse
import csv
import json
import os
import resource
import sys
import time

START = time.time()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_loss_peer import ftl  # noqa: E402
from bench_model import RetrievalNet  # noqa: E402


class Photos(torch.utils.data.Dataset):
    def __init__(self, rows, size):
        self.rows, self.size = rows, size

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        path, grade = self.rows[i]
        img = Image.open(path).convert("RGB").resize((self.size, self.size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0
        return x, grade


def peak_rss_mb():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024.0  # Linux reports KiB; worker peaks are summed as an upper bound


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "embed"])
    ap.add_argument("--manifest", required=True, help="fundus manifest.csv (image, grade, split columns)")
    ap.add_argument("--split", default="", help="only rows of this split (default: all)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=0, help="default: 20 for train, 32 for embed")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default="", help="torchvision MobileNetV2 state_dict (.pth)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    with open(a.manifest, newline="") as f:
        rows = [(r["image"], int(r["grade"])) for r in csv.DictReader(f) if not a.split or r["split"] == a.split]
    net = RetrievalNet("mobilenet_v2")
    if a.weights:
        state = torch.load(a.weights, map_location="cpu")
        net.backbone.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    batch = a.batch or (20 if a.mode == "train" else 32)
    loader = torch.utils.data.DataLoader(Photos(rows, a.size), batch_size=batch, shuffle=a.mode == "train",
                                         num_workers=a.workers, drop_last=a.mode == "train")
    images, first_done, t_first = 0, False, time.time()
    t_loop = time.time()
    if a.mode == "train":
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=3e-4, weight_decay=1e-5)
        for _ in range(a.epochs):
            for x, g in loader:
                opt.zero_grad()
                loss = ftl(net(x), (g + 1).float(), g)
                loss.backward()
                opt.step()
                if not first_done:
                    first_done, t_first = True, time.time()
                else:
                    images += len(g)
    else:
        net.eval()
        out = []
        with torch.no_grad():
            for x, g in loader:
                out.append(F.normalize(net(x), dim=1))
                if not first_done:
                    first_done, t_first = True, time.time()
                else:
                    images += len(g)
    seconds = time.time() - t_first
    print(json.dumps({"side": "pytorch", "mode": a.mode, "images": images, "seconds": round(seconds, 3),
                      "images_per_s": round(images / max(seconds, 1e-9), 3),
                      "loop_seconds": round(time.time() - t_loop, 3), "wall_s": round(time.time() - START, 3),
                      "peak_rss_mb": round(peak_rss_mb(), 1), "threads": a.threads, "workers": a.workers}))


if __name__ == "__main__":
    main()
