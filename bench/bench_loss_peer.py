"""Python peer of bench_lossmetrics: the same FTL (minmax degree) and batch-hard triplet in PyTorch,
forward + backward, float32, median ms. Run with Debian's torch: /usr/bin/python3 bench/bench_loss_peer.py
[--threads 2] [--dim 2560]"""
import argparse, time
import torch
import torch.nn.functional as F

def ftl(x, r, g, m=0.25, gamma=1.0):
    n = F.normalize(x, dim=1); s = n @ n.T
    B = x.shape[0]
    pairs = torch.ones(B, B, dtype=torch.bool).triu(1)
    same = g[:, None] == g[None, :]
    w = gamma * torch.minimum(r[None, :], r[:, None]) / torch.maximum(r[None, :], r[:, None])
    lp = (-w * torch.relu(1 + m - s) * (s - (1 - m)))[pairs & same]
    ln = (gamma * torch.relu(s + m) * (s - m))[pairs & ~same]
    return F.softplus(torch.logsumexp(lp, 0) + torch.logsumexp(ln, 0))

def batch_hard(x, g, margin=0.1):
    n = F.normalize(x, dim=1); d = 1 - n @ n.T
    same = g[:, None] == g[None, :]
    eye = torch.eye(len(g), dtype=torch.bool)
    pos, neg = same & ~eye, ~same
    valid = pos.any(1) & neg.any(1)
    hp = d.masked_fill(~pos, float('-inf')).max(1).values
    hn = d.masked_fill(~neg, float('inf')).min(1).values
    return torch.relu(hp - hn + margin)[valid].mean()

def median_ms(fn, reps=200):
    fn(); t = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); t.append((time.perf_counter() - t0) * 1e3)
    return sorted(t)[len(t) // 2]

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--threads', type=int, default=2); ap.add_argument('--dim', type=int, default=2560)
    a = ap.parse_args(); torch.set_num_threads(a.threads); torch.manual_seed(0)
    print('python losses (forward + backward, float32, dim %d, %d threads), median ms' % (a.dim, a.threads))
    for B in (16, 32, 64):
        x = F.normalize(torch.randn(B, a.dim), dim=1); g = torch.randint(0, 5, (B,)); r = torch.rand(B) * 0.8 + 0.2
        def run_ftl():
            xi = x.clone().requires_grad_(True); ftl(xi, r, g).backward()
        def run_bh():
            xi = x.clone().requires_grad_(True); batch_hard(xi, g).backward()
        print('  B=%-3d FTL %.3f  batch-hard %.3f' % (B, median_ms(run_ftl), median_ms(run_bh)))


if __name__ == '__main__':
    main()
