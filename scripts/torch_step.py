#!/usr/bin/env python3
"""The baseline of the GPU check: one training step of the NAS-Bench-101
network (stem 128, 3 stacks x 3 modules, 32x32, batch 256) for a cell, in
PyTorch with cuDNN, TF32 allowed, channels-last; prints images/s.

The network follows model_builder.py exactly as nasbench-db's builder does
(vertex channels, truncation, input projections, sums, concat plus the
projected input). RMSProp with momentum 0.9 and weight decay stands in for
TF1's RMSProp (same work per step).

Usage: torch_step.py [--batch 256] [--steps 20] [--matrix BITS] [--ops a,b,...]
"""
import argparse
import time

import torch
import torch.nn as nn


def vertex_channels(cin, cout, m):
    n = len(m)
    vc = [0] * n
    vc[0], vc[n - 1] = cin, cout
    if n == 2:
        return vc
    in_deg = [sum(m[i][j] for i in range(1, n)) for j in range(n)]
    interior, corr = cout // in_deg[n - 1], cout % in_deg[n - 1]
    for v in range(1, n - 1):
        if m[v][n - 1]:
            vc[v] = interior + (1 if corr else 0)
            corr = corr - 1 if corr else 0
    for v in range(n - 3, 0, -1):
        if not m[v][n - 1]:
            for d in range(v + 1, n - 1):
                if m[v][d]:
                    vc[v] = max(vc[v], vc[d])
    return vc


def cbr(cin, cout, k):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
                         nn.BatchNorm2d(cout, eps=1e-5, momentum=0.003), nn.ReLU(inplace=False))


class Module(nn.Module):
    def __init__(self, m, ops, cin, c):
        super().__init__()
        self.m, self.n = m, len(m)
        self.vc = vertex_channels(cin, c, m)
        self.proj = nn.ModuleDict()
        self.ops = nn.ModuleDict()
        for t in range(1, self.n - 1):
            if m[0][t]:
                self.proj[str(t)] = cbr(cin, self.vc[t], 1)
            op = ops[t]
            if op == 'conv3x3-bn-relu':
                self.ops[str(t)] = cbr(self.vc[t], self.vc[t], 3)
            elif op == 'conv1x1-bn-relu':
                self.ops[str(t)] = cbr(self.vc[t], self.vc[t], 1)
            elif op == 'maxpool3x3':
                self.ops[str(t)] = nn.MaxPool2d(3, 1, 1)
            else:
                raise ValueError(op)
        if m[0][self.n - 1]:
            self.out_proj = cbr(cin, c, 1)

    def forward(self, x):
        n, m, vc = self.n, self.m, self.vc
        t_out = [x]
        final = []
        for t in range(1, n - 1):
            add = [t_out[s][:, :vc[t]] for s in range(1, t) if m[s][t]]
            if m[0][t]:
                add.append(self.proj[str(t)](x))
            v = add[0]
            for a in add[1:]:
                v = v + a
            v = self.ops[str(t)](v)
            t_out.append(v)
            if m[t][n - 1]:
                final.append(v)
        if not final:
            return self.out_proj(x)
        out = final[0] if len(final) == 1 else torch.cat(final, 1)
        if m[0][n - 1]:
            out = out + self.out_proj(x)
        return out


class Net(nn.Module):
    def __init__(self, m, ops, stem=128, stacks=3, modules=3, classes=10):
        super().__init__()
        layers = [cbr(3, stem, 3)]
        c = stem
        for s in range(stacks):
            cin = c
            if s > 0:
                layers.append(nn.MaxPool2d(2, 2))
                c *= 2
            for _ in range(modules):
                layers.append(Module(m, ops, cin, c))
                cin = c
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--batch', type=int, default=256)
    p.add_argument('--steps', type=int, default=20)
    p.add_argument('--matrix', default='0111010000000100000010000100000000100000010000000')
    p.add_argument('--ops', default='input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,'
                                    'conv3x3-bn-relu,maxpool3x3,output')
    a = p.parse_args()
    n = int(len(a.matrix) ** 0.5)
    m = [[int(a.matrix[i * n + j]) for j in range(n)] for i in range(n)]
    ops = a.ops.split(',')
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    dev = torch.device('cuda')
    net = Net(m, ops).to(dev).to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.RMSprop(net.parameters(), lr=0.1, alpha=0.9, eps=1.0, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(a.batch, 3, 32, 32, device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.batch,), device=dev)
    lossf = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = lossf(net(x), y)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t = time.time()
    for _ in range(a.steps):
        step()
    torch.cuda.synchronize()
    secs = time.time() - t
    print('torch step, default network (%d parameters), PyTorch %s + cuDNN %s on %s: batch %d, %d steps in '
          '%.2f s: %.1f images/s, %.1f ms/step' % (params, torch.__version__, torch.backends.cudnn.version(),
                                                  torch.cuda.get_device_name(), a.batch, a.steps, secs,
                                                  a.batch * a.steps / secs, secs * 1e3 / a.steps))


if __name__ == '__main__':
    main()
