#!/usr/bin/python3
"""The Python peer of bench_model.cpp: the same network in PyTorch + torchvision.

Input spatial attention, a torchvision backbone (mobilenet_v2 / densenet121 `features`) applied to the
three views (original, width flip, height flip) as one batch, the mirror attention block of method.md
2.4 (literal aggregation), GeM (learnable p) on both branches, concat, L2 normalisation. Training step:
forward + backward + Adam on a fixed linear loss of the descriptor; inference: eval under no_grad.
Prints one JSON line, like bench_model.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


class SpatialAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)

    def forward(self, x):
        return x * torch.sigmoid(self.conv(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))


def conv_bn_relu(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MirrorAttention(nn.Module):
    def __init__(self, c, reduction=2):
        super().__init__()
        self.cp = c // reduction
        self.theta_a, self.theta_h, self.theta_v = (conv_bn_relu(c, self.cp) for _ in range(3))
        self.g_h, self.g_v = nn.Conv2d(c, self.cp, 1), nn.Conv2d(c, self.cp, 1)
        self.w_h, self.w_v = nn.Conv2d(self.cp, c, 1), nn.Conv2d(self.cp, c, 1)
        for conv in (self.theta_a[0], self.theta_h[0], self.theta_v[0], self.g_h, self.g_v):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for conv in (self.w_h, self.w_v):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, xa, xh, xv):
        b, c, h, w = xa.shape
        fa = self.theta_a(xa).flatten(2)
        scale = 1.0 / math.sqrt(self.cp)

        def branch(theta, g, wconv, xm):
            s = torch.bmm(theta(xm).flatten(2).transpose(1, 2), fa) * scale  # row i mirrored, column j original
            a = s.softmax(2)
            o = torch.bmm(g(xa).flatten(2), a)  # O[:, j] = sum_i A[i, j] G[:, i]
            return wconv(o.view(b, self.cp, h, w)) + xa

        return branch(self.theta_h, self.g_h, self.w_h, xh), branch(self.theta_v, self.g_v, self.w_v, xv)


class GeM(nn.Module):
    def __init__(self, p=3.0, eps=1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), p))
        self.eps = eps

    def forward(self, x):
        return x.clamp(min=self.eps).pow(self.p).mean((2, 3)).pow(1.0 / self.p)


class RetrievalNet(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.spatial_attention = SpatialAttention()
        self.backbone = getattr(torchvision.models, backbone)().features
        channels = {"mobilenet_v2": 1280, "densenet121": 1024}[backbone]
        self.attention = MirrorAttention(channels)
        self.pool = GeM()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        x = (x - self.mean) / self.std
        b = x.size(0)
        f = self.backbone(self.spatial_attention(torch.cat([x, x.flip(3), x.flip(2)], 0)))
        yh, yv = self.attention(f[:b], f[b:2 * b], f[2 * b:])
        return F.normalize(torch.cat([self.pool(yh), self.pool(yv)], 1), dim=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["cpu", "densenet"], default="cpu")
    ap.add_argument("--mode", choices=["train", "infer"], default="infer")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--side", default="python", help="label of this run in the output")
    a = ap.parse_args()
    batch = a.batch or (16 if a.model == "cpu" else 8)
    size = a.size or (224 if a.model == "cpu" else 256)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = RetrievalNet("mobilenet_v2" if a.model == "cpu" else "densenet121")
    x = torch.rand(batch, 3, size, size)
    w = torch.randn(batch, 2 * {"cpu": 1280, "densenet": 1024}[a.model])
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    train = a.mode == "train"
    net.train(train)
    times = []
    for i in range(a.warmup + a.iters):
        t0 = time.perf_counter()
        if train:
            opt.zero_grad()
            (net(x) * w).sum().backward()
            opt.step()
        else:
            with torch.no_grad():
                net(x)
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({"side": a.side, "model": a.model, "mode": a.mode, "batch": batch, "size": size,
                      "threads": a.threads, "channels_last": False, "iters": a.iters,
                      "s_per_iter_median": median, "img_per_s": batch / median}), flush=True)


if __name__ == "__main__":
    main()
