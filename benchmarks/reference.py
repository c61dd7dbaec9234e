"""The benchmarks' reference side: NVIDIA's SSD300 v1.1 design in PyTorch (the transcriptions in
``tests/reference/``), run beside ours. Needs torch and a development checkout."""

import numpy as np
import torch
from PIL import Image

from ssd_tf import data as data_lib
from tests.reference import design, network


def data_loader(detection_set, batch_size=8, workers=None, seed=0):
    """The reference's training transforms (PIL and torch, ``tests/reference/design.py``) in a torch
    DataLoader with ``workers`` processes (default: one per core this process may use), over the
    same images as ours."""
    usable, _ = data_lib.for_training(detection_set)
    dataset = design.DetectionDataset(usable.sources, usable.boxes, usable.labels,
                                              design.train_transform())
    torch.manual_seed(seed)
    workers = workers or data_lib.pipeline.usable_cores()  # the cores our pipeline sizes its pool by
    return torch.utils.data.DataLoader(dataset, batch_size, shuffle=True, num_workers=workers,
                                       persistent_workers=True, multiprocessing_context="fork")


def detector(num_classes, threads):
    """The reference's inference on uint8 images: PIL resize to 300x300, ToTensor + Normalize,
    NVIDIA's SSD300 (``tests/reference/network.py``) and its PostProcess. Returns (whole inference, network
    alone), functions of a list of images."""
    torch.set_num_threads(threads)
    model = network.SSD300(label_num=num_classes).eval()
    post = design.PostProcess(design.dboxes300_coco())
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

    def forward(images):
        batch = torch.stack([
            (torch.from_numpy(np.array(Image.fromarray(i).resize((300, 300), Image.BILINEAR))).permute(2, 0, 1)
             .float() / 255 - mean) / std for i in images])
        with torch.no_grad():
            return model(batch)

    def detect(images):
        with torch.no_grad():
            return post(*forward(images))
    return detect, forward


def train_step(batch_size=8, num_classes=21, threads=None, seed=0):
    """One training step of the reference design on a fixed random batch: NVIDIA's SSD300
    (``tests/reference/network.py``), the reference's loss (``design.Loss``, hard-negative mining
    included), ``torch.optim.SGD`` with momentum 0.9 and weight decay 5e-4. Returns a function."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = network.SSD300(label_num=num_classes).train()
    dboxes = design.dboxes300_coco()
    loss_fn = design.Loss(dboxes)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    images = torch.rand(batch_size, 3, 300, 300)
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.3, 0.2, 0.8, 0.7], [0.2, 0.4, 0.6, 0.9]])
    gloc, glabel = design.Encoder(dboxes).encode(boxes, torch.tensor([1, 2, 3]))
    gloc = gloc.T[None].repeat(batch_size, 1, 1)  # [B, 4, 8732], as NVIDIA's loop transposes its batch
    glabel = glabel[None].repeat(batch_size, 1)

    def step():
        optimizer.zero_grad()
        ploc, plabel = model(images)
        loss = loss_fn(ploc, plabel, gloc, glabel)
        loss.backward()
        optimizer.step()
        return float(loss)
    return step
