"""NVIDIA's SSD300 v1.1 (DeepLearningExamples, PyTorch/Detection/SSD/ssd/model.py) in plain torch,
with NVIDIA's and torchvision's module names, for the import tests. torchvision does not import
beside the CPU torch here, so its ResNet50 is written out with torchvision's names."""

import collections

import torch
from torch import nn


class Bottleneck(nn.Module):
    """torchvision's ResNet50 bottleneck ("v1.5": the stride on conv2, the 3x3)."""

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50(nn.Module):
    """torchvision.models.resnet50, module for module."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inplanes = 64
        self.layer1 = self._layer(64, 3, 1)
        self.layer2 = self._layer(128, 4, 2)
        self.layer3 = self._layer(256, 6, 2)
        self.layer4 = self._layer(512, 3, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, 1000)

    def _layer(self, planes, blocks, stride):
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


class NvidiaResNet(nn.Module):
    """NVIDIA's ``ResNet`` feature extractor: resnet50's children up to layer3, layer3 at stride 1."""

    def __init__(self, backbone):
        super().__init__()
        self.out_channels = [1024, 512, 512, 256, 256, 256]
        self.feature_extractor = nn.Sequential(*list(backbone.children())[:7])
        conv4_block1 = self.feature_extractor[-1][0]
        conv4_block1.conv1.stride = (1, 1)
        conv4_block1.conv2.stride = (1, 1)
        conv4_block1.downsample[0].stride = (1, 1)

    def forward(self, x):
        return self.feature_extractor(x)


class SSD300(nn.Module):
    """NVIDIA's SSD300: feature_extractor, additional_blocks, loc, conf."""

    def __init__(self, label_num=81, backbone=None):
        super().__init__()
        self.feature_extractor = NvidiaResNet(backbone or ResNet50())
        self.label_num = label_num
        self.additional_blocks = nn.ModuleList()
        channels = self.feature_extractor.out_channels
        for i, (cin, cout, mid) in enumerate(zip(channels[:-1], channels[1:], [256, 256, 128, 128, 128])):
            last = (dict(padding=1, stride=2) if i < 3 else {})
            self.additional_blocks.append(nn.Sequential(
                nn.Conv2d(cin, mid, kernel_size=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                nn.Conv2d(mid, cout, kernel_size=3, bias=False, **last), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)))
        self.num_defaults = [4, 6, 6, 6, 4, 4]
        self.loc = nn.ModuleList([nn.Conv2d(oc, nd * 4, 3, padding=1) for nd, oc in zip(self.num_defaults, channels)])
        self.conf = nn.ModuleList([nn.Conv2d(oc, nd * label_num, 3, padding=1)
                                   for nd, oc in zip(self.num_defaults, channels)])

    def forward(self, x):
        x = self.feature_extractor(x)
        feed = [x]
        for block in self.additional_blocks:
            x = block(x)
            feed.append(x)
        locs = [head(s).reshape(s.size(0), 4, -1) for s, head in zip(feed, self.loc)]
        confs = [c(s).reshape(s.size(0), self.label_num, -1) for s, c in zip(feed, self.conf)]
        return torch.cat(locs, 2).contiguous(), torch.cat(confs, 2).contiguous()


def randomise(model, seed=0):
    """Random weights and BN statistics of the size a trained network has (logits of order 1-10)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=g) * 0.5 + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
            elif isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.5)
    return model.eval()


def save_as_nvidia(model, path, prefix=""):
    """Save as NVIDIA's main.py does: {'epoch', 'iteration', 'optimizer', 'scheduler', 'label_map',
    'model'}, with real SGD and MultiStepLR state (whose milestones are a collections.Counter)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=2.6e-3, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[43, 54], gamma=0.1)
    state = {prefix + k: v for k, v in model.state_dict().items()}
    assert isinstance(scheduler.state_dict()["milestones"], collections.Counter)
    torch.save({"epoch": 65, "iteration": 120000, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "label_map": {i: i for i in range(1, 81)},
                "model": state}, path)
    return path
