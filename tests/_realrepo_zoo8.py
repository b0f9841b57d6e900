# ruff: noqa: E501  (repository code written in the upstream style, long lines included)
"""Generated repositories in the style of harritaylor/torchvggish, bryandlee/animegan2-pytorch,
seungwonpark/melgan and a hubconf returning a wrapped model (``nn.DataParallel``, ``torch.compile``)
(real-code round 8).

The file texts for tests/integration/test_real_hub_zoo8.py (see its docstring). Each follows the
public repository's hubconf and model code, written anew and narrowed (fewer channels, blocks and
layers) so the suite stays fast. Placeholders ``@NAME@`` are replaced by the test (artifact URLs).
"""

from __future__ import annotations

__all__ = [
    "ANIMEGAN_FILES",
    "ANIMEGAN_FORK_FILES",
    "MELGAN_FILES",
    "VGGISH_FILES",
    "VGGISH_FORK_FILES",
    "WRAPPED_FILES",
]

# --------------------------------------------------------------------------------------------------
# harritaylor/torchvggish: ``VGGish(VGG)`` whose constructor downloads twice (the network and the PCA
# parameters, the second converted with ``torch.as_tensor``/``reshape`` before ``load_state_dict``),
# a ``Postprocessor`` whose PCA matrices are assigned as plain tensors then wrapped as
# ``nn.Parameter(..., requires_grad=False)``, ``self.device`` picked with ``torch.cuda.is_available()``,
# ``self.to(self.device)``, ``preprocess``/``postprocess`` flags read in ``forward`` (preprocess takes a
# numpy waveform or a file name, and raises AttributeError on a tensor) and a squeeze at the end.
# Upstream declares resampy and soundfile (imported by vggish_input at the top); the fork imports them
# where they are used and declares torch and numpy.
# --------------------------------------------------------------------------------------------------
_VGGISH_HUBCONF = """dependencies = @DEPS@

from torchvggish.vggish import VGGish

model_urls = {
    'vggish': '@VGGISH_URL@',
    'pca': '@PCA_URL@'
}


def vggish(**kwargs):
    model = VGGish(urls=model_urls, **kwargs)
    return model
"""

_VGGISH_PARAMS = '''"""Global parameters for the VGGish model (narrowed)."""

# Architectural constants.
NUM_FRAMES = 96  # Frames in input mel-spectrogram patch.
NUM_BANDS = 64  # Frequency bands in input mel-spectrogram patch.
EMBEDDING_SIZE = 16  # Size of embedding layer.

# Hyperparameters used in feature and example generation.
SAMPLE_RATE = 16000
STFT_WINDOW_LENGTH_SECONDS = 0.025
STFT_HOP_LENGTH_SECONDS = 0.010
EXAMPLE_WINDOW_SECONDS = 0.96
EXAMPLE_HOP_SECONDS = 0.96

# Parameters used for embedding postprocessing.
PCA_EIGEN_VECTORS_NAME = 'pca_eigen_vectors'
PCA_MEANS_NAME = 'pca_means'
QUANTIZE_MIN_VAL = -2.0
QUANTIZE_MAX_VAL = +2.0
'''

_VGGISH_INPUT_TOP = '''"""Compute input examples for VGGish from audio waveform."""

import numpy as np
import torch
@TOP_IMPORTS@
from . import vggish_params


def waveform_to_examples(data, sample_rate, return_tensor=True):
    @LOCAL_RESAMPY@
    if len(data.shape) > 1:
        data = np.mean(data, axis=1)
    if sample_rate != vggish_params.SAMPLE_RATE:
        data = resampy.resample(data, sample_rate, vggish_params.SAMPLE_RATE)
    n = len(data) // (vggish_params.NUM_FRAMES * vggish_params.NUM_BANDS)
    frames = data[: n * vggish_params.NUM_FRAMES * vggish_params.NUM_BANDS]
    examples = frames.reshape(n, vggish_params.NUM_FRAMES, vggish_params.NUM_BANDS)
    if return_tensor:
        examples = torch.tensor(examples, requires_grad=True)[:, None, :, :].float()
    return examples


def wavfile_to_examples(wav_file, return_tensor=True):
    @LOCAL_SOUNDFILE@
    wav_data, sr = sf.read(wav_file, dtype='int16')
    samples = wav_data / 32768.0  # Convert to [-1.0, +1.0]
    return waveform_to_examples(samples, sr, return_tensor)
'''

_VGGISH_MODEL = '''import numpy as np
import torch
import torch.nn as nn
from torch import hub

from . import vggish_input, vggish_params


class VGG(nn.Module):
    def __init__(self, features):
        super(VGG, self).__init__()
        self.features = features
        self.embeddings = nn.Sequential(
            nn.Linear(16 * 4 * 6, 32),
            nn.ReLU(True),
            nn.Linear(32, 32),
            nn.ReLU(True),
            nn.Linear(32, vggish_params.EMBEDDING_SIZE),
            nn.ReLU(True))

    def forward(self, x):
        x = self.features(x)

        # Transpose the output from features to
        # remain compatible with vggish embeddings
        x = torch.transpose(x, 1, 3)
        x = torch.transpose(x, 1, 2)
        x = x.contiguous()
        x = x.view(x.size(0), -1)

        return self.embeddings(x)


class Postprocessor(nn.Module):
    """Post-processes VGGish embeddings: PCA (with whitening) and 8-bit quantization, as tensors."""

    def __init__(self):
        """Constructs a postprocessor."""
        super(Postprocessor, self).__init__()
        # Create empty matrix, for user's state_dict to load
        self.pca_eigen_vectors = torch.empty(
            (vggish_params.EMBEDDING_SIZE, vggish_params.EMBEDDING_SIZE,),
            dtype=torch.float,
        )
        self.pca_means = torch.empty(
            (vggish_params.EMBEDDING_SIZE, 1), dtype=torch.float
        )

        self.pca_eigen_vectors = nn.Parameter(self.pca_eigen_vectors, requires_grad=False)
        self.pca_means = nn.Parameter(self.pca_means, requires_grad=False)

    def postprocess(self, embeddings_batch):
        assert len(embeddings_batch.shape) == 2, "Expected 2-d batch, got %r" % (
            embeddings_batch.shape,
        )
        assert (
            embeddings_batch.shape[1] == vggish_params.EMBEDDING_SIZE
        ), "Bad batch shape: %r" % (embeddings_batch.shape,)

        # Apply PCA: [batch, emb] -> [emb, batch], subtract the means column, premultiply, back.
        pca_applied = torch.mm(self.pca_eigen_vectors, (embeddings_batch.t() - self.pca_means)).t()

        # Quantize: clip to [min, max], then map to 8-bit values in [0.0, 255.0]
        clipped_embeddings = torch.clamp(
            pca_applied, vggish_params.QUANTIZE_MIN_VAL, vggish_params.QUANTIZE_MAX_VAL
        )
        quantized_embeddings = torch.round(
            (clipped_embeddings - vggish_params.QUANTIZE_MIN_VAL)
            * (
                255.0
                / (vggish_params.QUANTIZE_MAX_VAL - vggish_params.QUANTIZE_MIN_VAL)
            )
        )
        return torch.squeeze(quantized_embeddings)

    def forward(self, x):
        return self.postprocess(x)


def make_layers():
    layers = []
    in_channels = 1
    for v in [4, "M", 8, "M", 8, 8, "M", 16, 16, "M"]:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


def _vgg():
    return VGG(make_layers())


class VGGish(VGG):
    def __init__(self, urls, device=None, pretrained=True, preprocess=True, postprocess=True, progress=True):
        super().__init__(make_layers())
        if pretrained:
            state_dict = hub.load_state_dict_from_url(urls['vggish'], progress=progress)
            super().load_state_dict(state_dict)

        if device is None:
            device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
        self.device = device
        self.preprocess = preprocess
        self.postprocess = postprocess
        if self.postprocess:
            self.pproc = Postprocessor()
            if pretrained:
                state_dict = hub.load_state_dict_from_url(urls['pca'], progress=progress)
                # TODO: Convert the state_dict to torch
                state_dict[vggish_params.PCA_EIGEN_VECTORS_NAME] = torch.as_tensor(
                    state_dict[vggish_params.PCA_EIGEN_VECTORS_NAME], dtype=torch.float
                )
                state_dict[vggish_params.PCA_MEANS_NAME] = torch.as_tensor(
                    state_dict[vggish_params.PCA_MEANS_NAME].reshape(-1, 1), dtype=torch.float
                )

                self.pproc.load_state_dict(state_dict)
        self.to(self.device)

    def forward(self, x, fs=None):
        if self.preprocess:
            x = self._preprocess(x, fs)
        x = x.to(self.device)
        x = VGG.forward(self, x)
        if self.postprocess:
            x = self._postprocess(x)
        return x

    def _preprocess(self, x, fs):
        if isinstance(x, np.ndarray):
            x = vggish_input.waveform_to_examples(x, fs)
        elif isinstance(x, str):
            x = vggish_input.wavfile_to_examples(x)
        else:
            raise AttributeError
        return x

    def _postprocess(self, x):
        return self.pproc(x)
'''


def _vggish(deps: str, top: str, resampy: str, soundfile: str) -> dict[str, str | None]:
    return {
        "hubconf.py": _VGGISH_HUBCONF.replace("@DEPS@", deps),
        "torchvggish/__init__.py": "",
        "torchvggish/vggish_params.py": _VGGISH_PARAMS,
        "torchvggish/vggish_input.py": _VGGISH_INPUT_TOP.replace("@TOP_IMPORTS@", top)
        .replace("@LOCAL_RESAMPY@", resampy)
        .replace("@LOCAL_SOUNDFILE@", soundfile),
        "torchvggish/vggish.py": _VGGISH_MODEL,
    }


VGGISH_FILES = _vggish(
    "['torch', 'numpy', 'resampy', 'soundfile']", "import resampy\nimport soundfile as sf\n", "pass", "pass"
)
VGGISH_FORK_FILES = _vggish("['torch', 'numpy']", "", "import resampy", "import soundfile as sf")

# --------------------------------------------------------------------------------------------------
# bryandlee/animegan2-pytorch: ``generator(pretrained=True, device="cpu", progress=True,
# check_hash=True)`` picking the checkpoint by a *string* ``pretrained`` (a known name, otherwise taken
# as a URL), ``torch.device(device)``, ``.to(device)`` and ``load_state_dict_from_url(...,
# map_location=device, check_hash=True)`` of a file name without a hash prefix; ``face2paint`` returns
# a *function* (a closure over size and device) and imports PIL and torchvision inside. The model:
# ``ConvNormLReLU(nn.Sequential)`` choosing its pad layer from a dict (ReflectionPad2d with a 4-tuple),
# GroupNorm(1, C), LeakyReLU(0.2, inplace=True), an InvertedResBlock with a depthwise conv, and a
# ``forward(input, align_corners=True)`` resizing back to sizes read from the tensors.
# --------------------------------------------------------------------------------------------------
_ANIMEGAN_GENERATOR = """import torch


def generator(pretrained=True, device="cpu", progress=True, check_hash=True):
    from model import Generator

    release_url = "@RELEASE_URL@"
    known = {
        name: f"{release_url}/{name}.pt"
        for name in [
            'celeba_distill', 'face_paint_512_v1', 'face_paint_512_v2', 'paprika'
        ]
    }

    device = torch.device(device)
    model = Generator().to(device)

    if type(pretrained) == str:
        # Look if a known name is passed, otherwise assume it's a URL
        ckpt_url = known.get(pretrained, pretrained)
        pretrained = True
    else:
        ckpt_url = known.get('face_paint_512_v2')

    if pretrained is True:
        state_dict = torch.hub.load_state_dict_from_url(
            ckpt_url,
            map_location=device,
            progress=progress,
            check_hash=check_hash,
        )
        model.load_state_dict(state_dict)

    return model
"""

_ANIMEGAN_FACE2PAINT = """

def face2paint(device="cpu", size=512):
    from PIL import Image
    from torchvision.transforms.functional import to_tensor, to_pil_image

    def face2paint(
        model: torch.nn.Module,
        img: Image.Image,
        size: int = size,
        side_by_side: bool = True,
        device: str = device,
    ) -> Image.Image:
        w, h = img.size
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2))
        img = img.resize((size, size), Image.LANCZOS)

        with torch.no_grad():
            input = to_tensor(img).unsqueeze(0) * 2 - 1
            output = model(input.to(device)).cpu()[0]

            if side_by_side:
                output = torch.cat([input[0], output], dim=2)

            output = (output * 0.5 + 0.5).clip(0, 1)

        return to_pil_image(output)

    return face2paint
"""

#: a fork whose face2paint works on tensors (no PIL, no torchvision): still returns a function
_ANIMEGAN_FORK_FACE2PAINT = """

def face2paint(device="cpu", size=512):
    import torch.nn.functional as F

    def face2paint(model: torch.nn.Module, img: torch.Tensor, size: int = size, side_by_side: bool = True,
                   device: str = device) -> torch.Tensor:
        h, w = img.shape[-2:]
        s = min(w, h)
        img = img[..., (h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
        img = F.interpolate(img[None], (size, size), mode="bilinear", align_corners=False)[0]
        with torch.no_grad():
            input = img.unsqueeze(0) * 2 - 1
            output = model(input.to(device)).cpu()[0]
            if side_by_side:
                output = torch.cat([input[0], output], dim=2)
            return (output * 0.5 + 0.5).clip(0, 1)

    return face2paint
"""

_ANIMEGAN_MODEL = """import torch
from torch import nn
import torch.nn.functional as F


class ConvNormLReLU(nn.Sequential):
    def __init__(self, in_ch, out_ch, kernel_size=3, stride=1, padding=1, pad_mode="reflect", groups=1, bias=False):

        pad_layer = {
            "zero":    nn.ZeroPad2d,
            "same":    nn.ReplicationPad2d,
            "reflect": nn.ReflectionPad2d,
        }
        if pad_mode not in pad_layer:
            raise NotImplementedError

        super(ConvNormLReLU, self).__init__(
            pad_layer[pad_mode](padding),
            nn.Conv2d(in_ch, out_ch, kernel_size=kernel_size, stride=stride, padding=0, groups=groups, bias=bias),
            nn.GroupNorm(num_groups=1, num_channels=out_ch, affine=True),
            nn.LeakyReLU(0.2, inplace=True)
        )


class InvertedResBlock(nn.Module):
    def __init__(self, in_ch, out_ch, expansion_ratio=2):
        super(InvertedResBlock, self).__init__()

        self.use_res_connect = in_ch == out_ch
        bottleneck = int(round(in_ch*expansion_ratio))
        layers = []
        if expansion_ratio != 1:
            layers.append(ConvNormLReLU(in_ch, bottleneck, kernel_size=1, padding=0))

        # dw
        layers.append(ConvNormLReLU(bottleneck, bottleneck, groups=bottleneck, bias=True))
        # pw
        layers.append(nn.Conv2d(bottleneck, out_ch, kernel_size=1, padding=0, bias=False))
        layers.append(nn.GroupNorm(num_groups=1, num_channels=out_ch, affine=True))

        self.layers = nn.Sequential(*layers)

    def forward(self, input):
        out = self.layers(input)
        if self.use_res_connect:
            out = input + out
        return out


class Generator(nn.Module):
    def __init__(self, ):
        super().__init__()

        self.block_a = nn.Sequential(
            ConvNormLReLU(3,  4, kernel_size=7, padding=3),
            ConvNormLReLU(4, 8, stride=2, padding=(0,1,0,1)),
            ConvNormLReLU(8, 8)
        )

        self.block_b = nn.Sequential(
            ConvNormLReLU(8,  8, stride=2, padding=(0,1,0,1)),
            ConvNormLReLU(8, 8)
        )

        self.block_c = nn.Sequential(
            ConvNormLReLU(8, 8),
            InvertedResBlock(8, 16, 2),
            InvertedResBlock(16, 16, 2),
            ConvNormLReLU(16, 8),
        )

        self.block_d = nn.Sequential(
            ConvNormLReLU(8, 8),
            ConvNormLReLU(8, 8)
        )

        self.block_e = nn.Sequential(
            ConvNormLReLU(8, 8),
            ConvNormLReLU(8,  8),
            ConvNormLReLU(8,  4, kernel_size=7, padding=3)
        )

        self.out_layer = nn.Sequential(
            nn.Conv2d(4, 3, kernel_size=1, stride=1, padding=0, bias=False),
            nn.Tanh()
        )

    def forward(self, input, align_corners=True):
        out = self.block_a(input)
        half_size = out.size()[-2:]
        out = self.block_b(out)
        out = self.block_c(out)

        if align_corners:
            out = F.interpolate(out, half_size, mode="bilinear", align_corners=True)
        else:
            out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=False)
        out = self.block_d(out)

        if align_corners:
            out = F.interpolate(out, input.size()[-2:], mode="bilinear", align_corners=True)
        else:
            out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=False)
        out = self.block_e(out)

        out = self.out_layer(out)
        return out
"""

ANIMEGAN_FILES: dict[str, str | None] = {
    "hubconf.py": _ANIMEGAN_GENERATOR + _ANIMEGAN_FACE2PAINT,
    "model.py": _ANIMEGAN_MODEL,
}
ANIMEGAN_FORK_FILES: dict[str, str | None] = {
    "hubconf.py": _ANIMEGAN_GENERATOR + _ANIMEGAN_FORK_FACE2PAINT,
    "model.py": _ANIMEGAN_MODEL,
}

# --------------------------------------------------------------------------------------------------
# seungwonpark/melgan: a Generator of hook-based ``nn.utils.weight_norm`` Conv1d/ConvTranspose1d layers,
# ReflectionPad1d and LeakyReLU(0.2) in one Sequential, ResStacks with weight-normed shortcuts; the class
# overrides ``eval(self, inference=False)`` (returning None) and its ``remove_weight_norm`` tries
# ``nn.utils.remove_weight_norm`` on every layer with a state and falls back to the layer's own method
# on a bare ``except``; the hubconf loads ``state_dict['model_g']`` and calls
# ``model.eval(inference=True)``, so the model returned has plain weights; ``inference(mel)`` pads,
# scales and returns int16 audio.
# --------------------------------------------------------------------------------------------------
MELGAN_FILES: dict[str, str | None] = {
    "hubconf.py": """dependencies = ['torch']
import torch
from model.generator import Generator

model_params = {
    'nvidia_tacotron2_LJ11_epoch3200': {
        'mel_channel': 8,
        'model_url': '@MELGAN_URL@',
    },
}


def melgan(model_name='nvidia_tacotron2_LJ11_epoch3200', pretrained=True, progress=True):
    params = model_params[model_name]
    model = Generator(params['mel_channel'])

    if pretrained:
        state_dict = torch.hub.load_state_dict_from_url(params['model_url'],
                                                        progress=progress)
        model.load_state_dict(state_dict['model_g'])

    model.eval(inference=True)

    return model


if __name__ == '__main__':
    vocoder = torch.hub.load('seungwonpark/melgan', 'melgan')
    mel = torch.randn(1, 8, 23)
    with torch.no_grad():
        audio = vocoder.inference(mel)
""",
    "model/__init__.py": "",
    "model/res_stack.py": """import torch
import torch.nn as nn
import torch.nn.functional as F
import numpy as np


class ResStack(nn.Module):
    def __init__(self, channel):
        super(ResStack, self).__init__()

        self.blocks = nn.ModuleList([
            nn.Sequential(
                nn.LeakyReLU(0.2),
                nn.ReflectionPad1d(3**i),
                nn.utils.weight_norm(nn.Conv1d(channel, channel, kernel_size=3, dilation=3**i)),
                nn.LeakyReLU(0.2),
                nn.utils.weight_norm(nn.Conv1d(channel, channel, kernel_size=1)),
            )
            for i in range(3)
        ])

        self.shortcuts = nn.ModuleList([
            nn.utils.weight_norm(nn.Conv1d(channel, channel, kernel_size=1))
            for i in range(3)
        ])

    def forward(self, x):
        for block, shortcut in zip(self.blocks, self.shortcuts):
            x = shortcut(x) + block(x)
        return x

    def remove_weight_norm(self):
        for block, shortcut in zip(self.blocks, self.shortcuts):
            nn.utils.remove_weight_norm(block[2])
            nn.utils.remove_weight_norm(block[4])
            nn.utils.remove_weight_norm(shortcut)
""",
    "model/generator.py": """import torch
import torch.nn as nn
import torch.nn.functional as F

from .res_stack import ResStack

MAX_WAV_VALUE = 32768.0


class Generator(nn.Module):
    def __init__(self, mel_channel):
        super(Generator, self).__init__()
        self.mel_channel = mel_channel

        self.generator = nn.Sequential(
            nn.ReflectionPad1d(3),
            nn.utils.weight_norm(nn.Conv1d(mel_channel, 16, kernel_size=7, stride=1)),

            nn.LeakyReLU(0.2),
            nn.utils.weight_norm(nn.ConvTranspose1d(16, 8, kernel_size=16, stride=8, padding=4)),

            ResStack(8),

            nn.LeakyReLU(0.2),
            nn.utils.weight_norm(nn.ConvTranspose1d(8, 8, kernel_size=16, stride=8, padding=4)),

            ResStack(8),

            nn.LeakyReLU(0.2),
            nn.utils.weight_norm(nn.ConvTranspose1d(8, 4, kernel_size=4, stride=2, padding=1)),

            ResStack(4),

            nn.LeakyReLU(0.2),
            nn.utils.weight_norm(nn.ConvTranspose1d(4, 4, kernel_size=4, stride=2, padding=1)),

            ResStack(4),

            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d(3),
            nn.utils.weight_norm(nn.Conv1d(4, 1, kernel_size=7, stride=1)),
            nn.Tanh(),
        )

    def forward(self, mel):
        mel = (mel + 5.0) / 5.0 # roughly normalize spectrogram
        return self.generator(mel)

    def eval(self, inference=False):
        super(Generator, self).eval()

        # don't remove weight norm while validation in training loop
        if inference:
            self.remove_weight_norm()

    def remove_weight_norm(self):
        for idx, layer in enumerate(self.generator):
            if len(layer.state_dict()) != 0:
                try:
                    nn.utils.remove_weight_norm(layer)
                except:
                    layer.remove_weight_norm()

    def inference(self, mel):
        hop_length = 256
        # pad input mel with zeros to cut artifact
        zero = torch.full((1, self.mel_channel, 10), -11.5129).to(mel.device)
        mel = torch.cat((mel, zero), dim=2)

        audio = self.forward(mel)
        audio = audio.squeeze() # collapse all dimension except time axis
        audio = audio[:-(hop_length*10)]
        audio = MAX_WAV_VALUE * audio
        audio = audio.clamp(min=-MAX_WAV_VALUE, max=MAX_WAV_VALUE-1)
        audio = audio.short()

        return audio
""",
}

# --------------------------------------------------------------------------------------------------
# A hubconf (in the style of training-script repositories such as ntsnet-cub200's, whose entrypoint
# takes a ``device``) returning its model wrapped the way the training code used it:
# ``nn.DataParallel(model)`` (the checkpoint's keys carry the ``module.`` prefix) and
# ``torch.compile(model)`` (an ``OptimizedModule`` whose state keys carry ``_orig_mod.``).
# --------------------------------------------------------------------------------------------------
WRAPPED_FILES: dict[str, str | None] = {
    "hubconf.py": '''dependencies = ['torch']

import torch
import torch.nn as nn

from net import SmallNet

URL = '@WRAPPED_URL@'


def _net(pretrained, device):
    net = SmallNet().to(device)
    if pretrained:
        net.load_state_dict(torch.hub.load_state_dict_from_url(URL, map_location=device))
    return net


def smallnet(pretrained=True, device='cpu'):
    """The plain network."""
    return _net(pretrained, device)


def smallnet_dp(pretrained=True, device='cpu'):
    """As the training script ran it: wrapped in nn.DataParallel."""
    return nn.DataParallel(_net(pretrained, device))


def smallnet_compiled(pretrained=True, device='cpu'):
    """Compiled for speed."""
    return torch.compile(_net(pretrained, device))
''',
    "net.py": """import torch
import torch.nn as nn


class SmallNet(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                                      nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))
""",
}
