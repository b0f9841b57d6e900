"""tinyvision: a small example hub repo used by the securehub demo.

Entrypoints build models from classes in ``torch.nn`` only, so securehub's
``trusted`` reconstruction can rebuild them in the parent without running
this file there. Pretrained weights come from WEIGHTS_URL, fetched through
``torch.hub.load_state_dict_from_url`` exactly as a torch.hub repo would; inside
the sandbox securehub's broker answers that call.
"""

import torch
from torch import nn

dependencies = ["torch"]

WEIGHTS_URL = "https://weights.example.com/tinyvision/tinynet.safetensors"


def tinynet(pretrained: bool = False, num_classes: int = 10) -> nn.Module:
    """A tiny MLP classifier for 8x8 grey images.

    Args:
        pretrained: load the published weights (requires num_classes=10).
        num_classes: size of the output layer.
    """
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, num_classes),
    )
    if pretrained:
        state = torch.hub.load_state_dict_from_url(WEIGHTS_URL, progress=False)
        model.load_state_dict(state)
    return model.eval()


def tinyconv(width: int = 4) -> nn.Module:
    """A small conv net with batch norm (buffers survive reconstruction)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, 10),
    ).eval()
