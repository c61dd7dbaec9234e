"""The reference's PyTorch reference (../shared/seed), for parity tests and side-by-side benchmarks.

Needs torch (the ``dev`` extra); nothing in the library imports it. Transcribed from the
design's code blocks: DefaultBoxes / dboxes300_coco, calc_iou_tensor, Encoder.encode, Loss,
PostProcess, and the training transforms (SSDCropping, Resize, ColorJitter, ToTensor,
RandomHorizontalFlip, Normalization, AssignGTtoDefaultBox) with a torch Dataset for a
DataLoader. torchvision does not import beside the CPU torch here, so its ColorJitter and
Normalize are written out with PIL and torch as torchvision's PIL path does them.
decode_single_new's NMS calls torchvision in the reference;
torchvision does not load beside the CPU torch here, so ``_nms`` is a plain greedy NMS with
torchvision's rule (drop boxes with IoU > threshold against a kept, higher-scoring box).
"""

import itertools
import random
from math import sqrt

import numpy as np
import torch
from PIL import Image, ImageEnhance
import torch.nn.functional as F
from torch import nn


class DefaultBoxes:
    def __init__(self, fig_size, feat_size, steps, scales, aspect_ratios, scale_xy=0.1, scale_wh=0.2):
        self.scale_xy, self.scale_wh = scale_xy, scale_wh
        fk = fig_size / np.array(steps)
        boxes = []
        for idx, sfeat in enumerate(feat_size):
            sk1 = scales[idx] / fig_size
            sk2 = scales[idx + 1] / fig_size
            sk3 = sqrt(sk1 * sk2)
            all_sizes = [(sk1, sk1), (sk3, sk3)]
            for alpha in aspect_ratios[idx]:
                w, h = sk1 * sqrt(alpha), sk1 / sqrt(alpha)
                all_sizes.append((w, h))
                all_sizes.append((h, w))
            for w, h in all_sizes:
                for i, j in itertools.product(range(sfeat), repeat=2):
                    cx, cy = (j + 0.5) / fk[idx], (i + 0.5) / fk[idx]
                    boxes.append((cx, cy, w, h))
        self.dboxes = torch.tensor(boxes, dtype=torch.float32)
        self.dboxes.clamp_(min=0, max=1)
        self.dboxes_ltrb = self.dboxes.clone()
        self.dboxes_ltrb[:, 0] = self.dboxes[:, 0] - 0.5 * self.dboxes[:, 2]
        self.dboxes_ltrb[:, 1] = self.dboxes[:, 1] - 0.5 * self.dboxes[:, 3]
        self.dboxes_ltrb[:, 2] = self.dboxes[:, 0] + 0.5 * self.dboxes[:, 2]
        self.dboxes_ltrb[:, 3] = self.dboxes[:, 1] + 0.5 * self.dboxes[:, 3]

    def __call__(self, order="ltrb"):
        return self.dboxes_ltrb if order == "ltrb" else self.dboxes


def dboxes300_coco():
    return DefaultBoxes(300, [38, 19, 10, 5, 3, 1], [8, 16, 32, 64, 100, 300],
                        [21, 45, 99, 153, 207, 261, 315], [[2], [2, 3], [2, 3], [2, 3], [2], [2]])


def calc_iou_tensor(boxes1, boxes2):
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    return inter / (area1[:, None] + area2 - inter)


class Encoder:
    def __init__(self, dboxes):
        self.dboxes = dboxes(order="ltrb")
        self.nboxes = self.dboxes.size(0)

    def encode(self, bboxes_in, labels_in, criteria=0.5):
        ious = calc_iou_tensor(bboxes_in, self.dboxes)
        best_dbox_ious, best_dbox_idx = ious.max(dim=0)
        best_bbox_ious, best_bbox_idx = ious.max(dim=1)
        best_dbox_ious.index_fill_(0, best_bbox_idx, 2.0)
        idx = torch.arange(0, best_bbox_idx.size(0), dtype=torch.int64)
        best_dbox_idx[best_bbox_idx[idx]] = idx
        masks = best_dbox_ious > criteria
        labels_out = torch.zeros(self.nboxes, dtype=torch.int64)
        labels_out[masks] = labels_in[best_dbox_idx[masks]]
        bboxes_out = self.dboxes.clone()
        bboxes_out[masks, :] = bboxes_in[best_dbox_idx[masks], :]
        x = 0.5 * (bboxes_out[:, 0] + bboxes_out[:, 2])
        y = 0.5 * (bboxes_out[:, 1] + bboxes_out[:, 3])
        w = bboxes_out[:, 2] - bboxes_out[:, 0]
        h = bboxes_out[:, 3] - bboxes_out[:, 1]
        bboxes_out[:, 0], bboxes_out[:, 1], bboxes_out[:, 2], bboxes_out[:, 3] = x, y, w, h
        return bboxes_out, labels_out


class Loss(nn.Module):
    def __init__(self, dboxes):
        super().__init__()
        self.scale_xy = 1.0 / dboxes.scale_xy
        self.scale_wh = 1.0 / dboxes.scale_wh
        self.location_loss = nn.SmoothL1Loss(reduction="none")
        self.dboxes = nn.Parameter(dboxes(order="xywh").transpose(0, 1).unsqueeze(dim=0), requires_grad=False)
        self.confidence_loss = nn.CrossEntropyLoss(reduction="none")

    def _location_vec(self, loc):
        gxy = self.scale_xy * (loc[:, :2, :] - self.dboxes[:, :2, :]) / self.dboxes[:, 2:, :]
        gwh = self.scale_wh * (loc[:, 2:, :] / self.dboxes[:, 2:, :]).log()
        return torch.cat((gxy, gwh), dim=1).contiguous()

    def forward(self, ploc, plabel, gloc, glabel):
        mask = torch.gt(glabel, 0)
        pos_num = mask.sum(dim=1)
        vec_gd = self._location_vec(gloc)
        loc_loss = self.location_loss(ploc, vec_gd).sum(dim=1)
        loc_loss = (mask.float() * loc_loss).sum(dim=1)
        con = self.confidence_loss(plabel, glabel)
        con_neg = con.clone()
        con_neg[mask] = 0.0
        _, con_idx = con_neg.sort(dim=1, descending=True)
        _, con_rank = con_idx.sort(dim=1)
        neg_num = torch.clamp(3 * pos_num, max=mask.size(1)).unsqueeze(-1)
        neg_mask = torch.lt(con_rank, neg_num)
        con_loss = (con * (mask.float() + neg_mask.float())).sum(dim=1)
        total_loss = loc_loss + con_loss
        num_mask = torch.gt(pos_num, 0).float()
        pos_num = pos_num.float().clamp(min=1e-6)
        return (total_loss * num_mask / pos_num).mean(dim=0)


def _nms(boxes, scores, iou_threshold):
    order = scores.argsort(descending=True)
    keep = []
    while order.numel() > 0:
        i = order[0]
        keep.append(int(i))
        if order.numel() == 1:
            break
        ious = calc_iou_tensor(boxes[i][None], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return torch.tensor(keep, dtype=torch.int64)


def _batched_nms(boxes, scores, idxs, iou_threshold):
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return _nms(boxes + offsets[:, None], scores, iou_threshold)


class PostProcess(nn.Module):
    def __init__(self, dboxes):
        super().__init__()
        self.dboxes_xywh = dboxes(order="xywh").unsqueeze(dim=0)
        self.scale_xy, self.scale_wh = dboxes.scale_xy, dboxes.scale_wh
        self.criteria, self.max_output = 0.5, 100

    def scale_back_batch(self, bboxes_in, scores_in):
        bboxes_in = bboxes_in.permute(0, 2, 1).clone()
        scores_in = scores_in.permute(0, 2, 1)
        bboxes_in[:, :, :2] = self.scale_xy * bboxes_in[:, :, :2]
        bboxes_in[:, :, 2:] = self.scale_wh * bboxes_in[:, :, 2:]
        bboxes_in[:, :, :2] = bboxes_in[:, :, :2] * self.dboxes_xywh[:, :, 2:] + self.dboxes_xywh[:, :, :2]
        bboxes_in[:, :, 2:] = bboxes_in[:, :, 2:].exp() * self.dboxes_xywh[:, :, 2:]
        left = bboxes_in[:, :, 0] - 0.5 * bboxes_in[:, :, 2]
        t = bboxes_in[:, :, 1] - 0.5 * bboxes_in[:, :, 3]
        r = bboxes_in[:, :, 0] + 0.5 * bboxes_in[:, :, 2]
        b = bboxes_in[:, :, 1] + 0.5 * bboxes_in[:, :, 3]
        bboxes_in[:, :, 0], bboxes_in[:, :, 1], bboxes_in[:, :, 2], bboxes_in[:, :, 3] = left, t, r, b
        return bboxes_in, F.softmax(scores_in, dim=-1)

    def decode_single_new(self, bboxes_in, scores_in, criteria, num_output):
        num_classes = scores_in.shape[-1]
        bboxes_in = bboxes_in.clamp(min=0, max=1)
        bboxes_in = bboxes_in.repeat(1, num_classes).reshape(scores_in.shape[0], -1, 4)
        labels = torch.arange(num_classes).view(1, -1).expand_as(scores_in)
        bboxes_in, scores_in, labels = bboxes_in[:, 1:, :], scores_in[:, 1:], labels[:, 1:]
        bboxes_in, scores_in, labels = bboxes_in.reshape(-1, 4), scores_in.reshape(-1), labels.reshape(-1)
        inds = torch.nonzero(scores_in > 0.05).squeeze(1)
        bboxes_in, scores_in, labels = bboxes_in[inds, :], scores_in[inds], labels[inds]
        ws, hs = bboxes_in[:, 2] - bboxes_in[:, 0], bboxes_in[:, 3] - bboxes_in[:, 1]
        keep = ((ws >= 1 / 300) & (hs >= 1 / 300)).nonzero().squeeze(1)
        bboxes_in, scores_in, labels = bboxes_in[keep], scores_in[keep], labels[keep]
        keep = _batched_nms(bboxes_in, scores_in, labels, iou_threshold=criteria)[:num_output]
        return bboxes_in[keep, :], labels[keep], scores_in[keep]

    def forward(self, bboxes_in, scores_in):
        bboxes, probs = self.scale_back_batch(bboxes_in, scores_in)
        return [self.decode_single_new(b.squeeze(0), p.squeeze(0), self.criteria, self.max_output)
                for b, p in zip(bboxes.split(1, 0), probs.split(1, 0))]


# ---------------------------------------------------------------- training transforms (seed)

class SSDCropping:
    """The reference's random crop: an IoU option, up to 5 tries, loop until one succeeds."""

    def __init__(self):
        self.sample_options = (None, (0.1, None), (0.3, None), (0.5, None), (0.7, None), (0.9, None), (None, None))

    def __call__(self, image, target):
        while True:
            mode = random.choice(self.sample_options)
            if mode is None:
                return image, target
            htot, wtot = target["height_width"]
            min_iou, max_iou = mode
            min_iou = float("-inf") if min_iou is None else min_iou
            max_iou = float("+inf") if max_iou is None else max_iou
            for _ in range(5):
                w = random.uniform(0.3, 1.0)
                h = random.uniform(0.3, 1.0)
                if w / h < 0.5 or w / h > 2:
                    continue
                left = random.uniform(0, 1.0 - w)
                top = random.uniform(0, 1.0 - h)
                right, bottom = left + w, top + h
                bboxes = target["boxes"]
                ious = calc_iou_tensor(bboxes, torch.tensor([[left, top, right, bottom]]))
                if not ((ious > min_iou) & (ious < max_iou)).all():
                    continue
                xc = 0.5 * (bboxes[:, 0] + bboxes[:, 2])
                yc = 0.5 * (bboxes[:, 1] + bboxes[:, 3])
                masks = (xc > left) & (xc < right) & (yc > top) & (yc < bottom)
                if not masks.any():
                    continue
                bboxes[bboxes[:, 0] < left, 0] = left
                bboxes[bboxes[:, 1] < top, 1] = top
                bboxes[bboxes[:, 2] > right, 2] = right
                bboxes[bboxes[:, 3] > bottom, 3] = bottom
                bboxes = bboxes[masks, :]
                labels = target["labels"][masks]
                image = image.crop((int(left * wtot), int(top * htot), int(right * wtot), int(bottom * htot)))
                bboxes[:, 0] = (bboxes[:, 0] - left) / w
                bboxes[:, 1] = (bboxes[:, 1] - top) / h
                bboxes[:, 2] = (bboxes[:, 2] - left) / w
                bboxes[:, 3] = (bboxes[:, 3] - top) / h
                target["boxes"], target["labels"] = bboxes, labels
                return image, target


class Resize:
    def __call__(self, image, target):
        return image.resize((300, 300), Image.BILINEAR), target


def adjust_brightness(image, factor):
    return ImageEnhance.Brightness(image).enhance(factor)


def adjust_contrast(image, factor):
    return ImageEnhance.Contrast(image).enhance(factor)


def adjust_saturation(image, factor):
    return ImageEnhance.Color(image).enhance(factor)


def adjust_hue(image, factor):
    """torchvision's PIL adjust_hue: shift the HSV hue channel by factor * 255, wrapping."""
    mode = image.mode
    h, s, v = image.convert("HSV").split()
    np_h = np.array(h, dtype=np.uint8)
    np_h += np.uint8(int(factor * 255) % 256)  # wraps around, as torchvision's uint8 add does
    return Image.merge("HSV", (Image.fromarray(np_h, "L"), s, v)).convert(mode)


class ColorJitter:
    """torchvision ColorJitter(0.125, 0.5, 0.5, 0.05) on PIL images: factors drawn uniformly,
    the four adjustments in a random order."""

    def __init__(self, brightness=0.125, contrast=0.5, saturation=0.5, hue=0.05):
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def __call__(self, image, target):
        b = float(torch.empty(1).uniform_(1 - self.brightness, 1 + self.brightness))
        c = float(torch.empty(1).uniform_(1 - self.contrast, 1 + self.contrast))
        s = float(torch.empty(1).uniform_(1 - self.saturation, 1 + self.saturation))
        h = float(torch.empty(1).uniform_(-self.hue, self.hue))
        ops = [(adjust_brightness, b), (adjust_contrast, c), (adjust_saturation, s), (adjust_hue, h)]
        for i in torch.randperm(4).tolist():
            fn, factor = ops[i]
            image = fn(image, factor)
        return image, target


class ToTensor:
    def __call__(self, image, target):
        array = np.asarray(image, np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1).contiguous(), target


class RandomHorizontalFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, image, target):
        if random.random() < self.p:
            image = image.flip(-1)
            bbox = target["boxes"]
            bbox[:, [0, 2]] = 1.0 - bbox[:, [2, 0]]
            target["boxes"] = bbox
        return image, target


class Normalization:
    def __init__(self, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
        self.mean = torch.tensor(mean)[:, None, None]
        self.std = torch.tensor(std)[:, None, None]

    def __call__(self, image, target):
        return (image - self.mean) / self.std, target


class AssignGTtoDefaultBox:
    def __init__(self):
        self.encoder = Encoder(dboxes300_coco())

    def __call__(self, image, target):
        target["boxes"], target["labels"] = self.encoder.encode(target["boxes"], target["labels"])
        return image, target


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


def train_transform():
    return Compose([SSDCropping(), Resize(), ColorJitter(), ToTensor(), RandomHorizontalFlip(), Normalization(),
                    AssignGTtoDefaultBox()])


class DetectionDataset(torch.utils.data.Dataset):
    """The reference's data set: PIL opens each image; targets are normalised xyxy boxes and labels."""

    def __init__(self, paths, boxes, labels, transform):
        self.paths, self.boxes, self.labels, self.transform = list(paths), list(boxes), list(labels), transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        image = Image.open(self.paths[index]).convert("RGB")
        target = {"boxes": torch.tensor(np.asarray(self.boxes[index], np.float32)).reshape(-1, 4),
                  "labels": torch.tensor(np.asarray(self.labels[index], np.int64)),
                  "height_width": (image.height, image.width)}
        image, target = self.transform(image, target)
        return image, target["boxes"], target["labels"]
