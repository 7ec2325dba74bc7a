"""The numbers of the authors' data recipe: normalisation, crop scales, flip label swaps.

Plain Python (no torch), so that option parsers can show them as defaults cheaply.
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TSN's multi-scale crop: crop sides as fractions of the short side.
MULTI_SCALE_CROP_SCALES = (1.0, 0.875, 0.75, 0.66)
# Something-Something V1/V2 classes whose meaning swaps under a horizontal flip
# ("... from left to right" <-> "... from right to left", docs/math.md §7).
SOMETHING_FLIP_LABEL_SWAPS = {86: 87, 87: 86, 93: 94, 94: 93, 166: 167, 167: 166}
