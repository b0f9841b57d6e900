# ruff: noqa: E501  (repository code written in the upstream style, long lines included)
"""Generated repositories in the style of NVIDIA/DeepLearningExamples' WaveGlow and HiFi-GAN
entrypoints, pytorchvideo's ``mvit_base_16x4``, a user's local checkout (``source="local"``) and
hubconfs that check or import packages they do not declare (pytorch/fairseq, huggingface/transformers)
(real-code round 11).

The file texts for tests/integration/test_real_hub_zoo11.py (see its docstring). Each follows the
public repository's hubconf and model code, written anew and narrowed (few channels, two flows) so
the suite stays fast. Placeholders ``@NAME@`` are replaced by the test (artifact URLs).
"""

from __future__ import annotations

__all__ = [
    "FAIRSEQ_FILES",
    "HIFIGAN_FILES",
    "LOCAL_EDIT",
    "LOCAL_FILES",
    "MVIT_FILES",
    "TRANSFORMERS_FILES",
    "WAVEGLOW_FILES",
]

# --------------------------------------------------------------------------------------------------
# NVIDIA/DeepLearningExamples PyTorch/SpeechSynthesis/Tacotron2 ``nvidia_waveglow``: the checkpoint is a
# dict ``{"state_dict": ..., "config": {...}}`` (``config`` nests ``WN_config``), DDP ``module.`` keys
# unwrapped, ``WaveGlow(**config)``. New here: ``Invertible1x1Conv`` computes its weight's inverse
# lazily on the first ``reverse=True`` call and caches it as a plain tensor attribute (``W_inverse``, no
# buffer); ``WN`` layers are weight-normed (users call the static ``WaveGlow.remove_weightnorm(model)``);
# ``fused_add_tanh_sigmoid_multiply`` is a ``@torch.jit.script`` function compiled at import; ``forward``
# takes one ``(spect, audio)`` tuple (training) and users call ``infer(spect, sigma=...)``, which draws
# ``torch.randn`` noise. Upstream downloads with ``urllib.request.urlretrieve`` (a ``sandbox-violation``,
# see the user guide); this fork uses ``torch.hub.load_state_dict_from_url``. Narrowed: 4 mel channels,
# 4 flows, n_group 4, WN with 2 layers of 4 channels, upsampling kernel 16 stride 4.
# --------------------------------------------------------------------------------------------------
_WAVEGLOW_HUBCONF = """dependencies = ["torch"]

from waveglow.entrypoints import nvidia_waveglow  # noqa: E402,F401
"""

_WAVEGLOW_MODEL = '''import torch
from torch.autograd import Variable
import torch.nn.functional as F


@torch.jit.script
def fused_add_tanh_sigmoid_multiply(input_a, input_b, n_channels):
    n_channels_int = n_channels[0]
    in_act = input_a + input_b
    t_act = torch.tanh(in_act[:, :n_channels_int, :])
    s_act = torch.sigmoid(in_act[:, n_channels_int:, :])
    acts = t_act * s_act
    return acts


class Invertible1x1Conv(torch.nn.Module):
    """
    The layer outputs both the convolution, and the log determinant
    of its weight matrix.  If reverse=True it does convolution with
    inverse
    """

    def __init__(self, c):
        super(Invertible1x1Conv, self).__init__()
        self.conv = torch.nn.Conv1d(c, c, kernel_size=1, stride=1, padding=0, bias=False)

        # Sample a random orthonormal matrix to initialize weights
        W = torch.linalg.qr(torch.FloatTensor(c, c).normal_())[0]

        # Ensure determinant is 1.0 not -1.0
        if torch.det(W) < 0:
            W[:, 0] = -1 * W[:, 0]
        W = W.view(c, c, 1)
        self.conv.weight.data = W

    def forward(self, z, reverse=False):
        batch_size, group_size, n_of_groups = z.size()
        W = self.conv.weight.squeeze()
        if reverse:
            if not hasattr(self, "W_inverse"):
                # Reverse computation, once: cached as a plain attribute
                W_inverse = W.float().inverse()
                W_inverse = Variable(W_inverse[..., None])
                if z.type() == "torch.cuda.HalfTensor" or z.type() == "torch.HalfTensor":
                    W_inverse = W_inverse.half()
                self.W_inverse = W_inverse
            z = F.conv1d(z, self.W_inverse, bias=None, stride=1, padding=0)
            return z
        else:
            log_det_W = batch_size * n_of_groups * torch.logdet(W.float())
            z = self.conv(z)
            return z, log_det_W


class WN(torch.nn.Module):
    """WaveNet-like layer for the affine coupling (dilation doubles on each layer)."""

    def __init__(self, n_in_channels, n_mel_channels, n_layers, n_channels, kernel_size):
        super(WN, self).__init__()
        assert kernel_size % 2 == 1
        assert n_channels % 2 == 0
        self.n_layers = n_layers
        self.n_channels = n_channels
        self.in_layers = torch.nn.ModuleList()
        self.res_skip_layers = torch.nn.ModuleList()
        self.cond_layers = torch.nn.ModuleList()

        start = torch.nn.Conv1d(n_in_channels, n_channels, 1)
        start = torch.nn.utils.weight_norm(start, name="weight")
        self.start = start

        # the last layer starts at zero: the coupling does nothing at first; the test's pretrained
        # state moves it
        end = torch.nn.Conv1d(n_channels, 2 * n_in_channels, 1)
        end.weight.data.zero_()
        end.bias.data.zero_()
        self.end = end

        for i in range(n_layers):
            dilation = 2 ** i
            padding = int((kernel_size * dilation - dilation) / 2)
            in_layer = torch.nn.Conv1d(n_channels, 2 * n_channels, kernel_size, dilation=dilation, padding=padding)
            self.in_layers.append(torch.nn.utils.weight_norm(in_layer, name="weight"))
            cond_layer = torch.nn.Conv1d(n_mel_channels, 2 * n_channels, 1)
            self.cond_layers.append(torch.nn.utils.weight_norm(cond_layer, name="weight"))
            res_skip_channels = 2 * n_channels if i < n_layers - 1 else n_channels
            res_skip_layer = torch.nn.Conv1d(n_channels, res_skip_channels, 1)
            self.res_skip_layers.append(torch.nn.utils.weight_norm(res_skip_layer, name="weight"))

    def forward(self, forward_input):
        audio, spect = forward_input
        audio = self.start(audio)
        for i in range(self.n_layers):
            acts = fused_add_tanh_sigmoid_multiply(
                self.in_layers[i](audio), self.cond_layers[i](spect), torch.IntTensor([self.n_channels]))
            res_skip_acts = self.res_skip_layers[i](acts)
            if i < self.n_layers - 1:
                audio = res_skip_acts[:, :self.n_channels, :] + audio
                skip_acts = res_skip_acts[:, self.n_channels:, :]
            else:
                skip_acts = res_skip_acts
            if i == 0:
                output = skip_acts
            else:
                output = skip_acts + output
        return self.end(output)


class WaveGlow(torch.nn.Module):
    def __init__(self, n_mel_channels, n_flows, n_group, n_early_every, n_early_size, WN_config, upsample_kernel=1024, upsample_stride=256):
        super(WaveGlow, self).__init__()
        self.upsample = torch.nn.ConvTranspose1d(n_mel_channels, n_mel_channels, upsample_kernel, stride=upsample_stride)
        assert n_group % 2 == 0
        self.n_flows = n_flows
        self.n_group = n_group
        self.n_early_every = n_early_every
        self.n_early_size = n_early_size
        self.WN = torch.nn.ModuleList()
        self.convinv = torch.nn.ModuleList()

        n_half = int(n_group / 2)
        n_remaining_channels = n_group
        for k in range(n_flows):
            if k % self.n_early_every == 0 and k > 0:
                n_half = n_half - int(self.n_early_size / 2)
                n_remaining_channels = n_remaining_channels - self.n_early_size
            self.convinv.append(Invertible1x1Conv(n_remaining_channels))
            self.WN.append(WN(n_half, n_mel_channels * n_group, **WN_config))
        self.n_remaining_channels = n_remaining_channels

    def forward(self, forward_input):
        """
        forward_input[0] = mel_spectrogram:  batch x n_mel_channels x frames
        forward_input[1] = audio: batch x time
        """
        spect, audio = forward_input
        spect = self.upsample(spect)
        assert spect.size(2) >= audio.size(1)
        if spect.size(2) > audio.size(1):
            spect = spect[:, :, :audio.size(1)]

        spect = spect.unfold(2, self.n_group, self.n_group).permute(0, 2, 1, 3)
        spect = spect.contiguous().view(spect.size(0), spect.size(1), -1)
        spect = spect.permute(0, 2, 1)

        audio = audio.unfold(1, self.n_group, self.n_group).permute(0, 2, 1)
        output_audio = []
        log_s_list = []
        log_det_W_list = []
        for k in range(self.n_flows):
            if k % self.n_early_every == 0 and k > 0:
                output_audio.append(audio[:, :self.n_early_size, :])
                audio = audio[:, self.n_early_size:, :]
            audio, log_det_W = self.convinv[k](audio)
            log_det_W_list.append(log_det_W)
            n_half = int(audio.size(1) / 2)
            audio_0 = audio[:, :n_half, :]
            audio_1 = audio[:, n_half:, :]
            output = self.WN[k]((audio_0, spect))
            log_s = output[:, n_half:, :]
            b = output[:, :n_half, :]
            audio_1 = torch.exp(log_s) * audio_1 + b
            log_s_list.append(log_s)
            audio = torch.cat([audio_0, audio_1], 1)
        output_audio.append(audio)
        return torch.cat(output_audio, 1), log_s_list, log_det_W_list

    def infer(self, spect, sigma=1.0):
        spect = self.upsample(spect)
        # trim conv artifacts
        time_cutoff = self.upsample.kernel_size[0] - self.upsample.stride[0]
        spect = spect[:, :, :-time_cutoff]

        spect = spect.unfold(2, self.n_group, self.n_group).permute(0, 2, 1, 3)
        spect = spect.contiguous().view(spect.size(0), spect.size(1), -1)
        spect = spect.permute(0, 2, 1)

        audio = torch.randn(spect.size(0), self.n_remaining_channels, spect.size(2), device=spect.device).to(spect.dtype)
        audio = torch.autograd.Variable(sigma * audio)

        for k in reversed(range(self.n_flows)):
            n_half = int(audio.size(1) / 2)
            audio_0 = audio[:, :n_half, :]
            audio_1 = audio[:, n_half:, :]
            output = self.WN[k]((audio_0, spect))
            s = output[:, n_half:, :]
            b = output[:, :n_half, :]
            audio_1 = (audio_1 - b) / torch.exp(s)
            audio = torch.cat([audio_0, audio_1], 1)
            audio = self.convinv[k](audio, reverse=True)
            if k % self.n_early_every == 0 and k > 0:
                z = torch.randn(spect.size(0), self.n_early_size, spect.size(2), device=spect.device).to(spect.dtype)
                audio = torch.cat((sigma * z, audio), 1)

        audio = audio.permute(0, 2, 1).contiguous().view(audio.size(0), -1).data
        return audio

    @staticmethod
    def remove_weightnorm(model):
        waveglow = model
        for WN in waveglow.WN:
            WN.start = torch.nn.utils.remove_weight_norm(WN.start)
            WN.in_layers = remove(WN.in_layers)
            WN.cond_layers = remove(WN.cond_layers)
            WN.res_skip_layers = remove(WN.res_skip_layers)
        return waveglow


def remove(conv_list):
    new_conv_list = torch.nn.ModuleList()
    for old_conv in conv_list:
        old_conv = torch.nn.utils.remove_weight_norm(old_conv)
        new_conv_list.append(old_conv)
    return new_conv_list
'''

_WAVEGLOW_ENTRYPOINTS = '''import torch


def checkpoint_from_distributed(state_dict):
    """True when the checkpoint was saved from DistributedDataParallel ("module." keys)."""
    ret = False
    for key, _ in state_dict.items():
        if key.find("module.") != -1:
            ret = True
            break
    return ret


def unwrap_distributed(state_dict):
    """The state without DistributedDataParallel's "module." prefix."""
    new_state_dict = {}
    for key, value in state_dict.items():
        new_key = key.replace("module.1.", "")
        new_key = new_key.replace("module.", "")
        new_state_dict[new_key] = value
    return new_state_dict


def nvidia_waveglow(pretrained=True, **kwargs):
    """Constructs a WaveGlow model (nn.module with additional infer(input) method).
    Args:
        pretrained (bool): If True, returns a model pretrained on LJ Speech dataset.
        model_math (str, 'fp32'): returns a model in given precision ('fp32' or 'fp16')
    """
    from waveglow import model as waveglow

    fp16 = "model_math" in kwargs and kwargs["model_math"] == "fp16"
    if pretrained:
        checkpoint = "@WAVEGLOW_FP16@" if fp16 else "@WAVEGLOW_FP32@"
        ckpt = torch.hub.load_state_dict_from_url(checkpoint, map_location="cpu", progress=False)
        state_dict = ckpt["state_dict"]
        if checkpoint_from_distributed(state_dict):
            state_dict = unwrap_distributed(state_dict)
        config = ckpt["config"]
    else:
        config = {"n_mel_channels": 4, "n_flows": 4, "n_group": 4, "n_early_every": 2, "n_early_size": 2,
                  "upsample_kernel": 16, "upsample_stride": 4,
                  "WN_config": {"n_layers": 2, "kernel_size": 3, "n_channels": 4}}
        for k, v in kwargs.items():
            if k in config.keys():
                config[k] = v
            elif k in config["WN_config"].keys():
                config["WN_config"][k] = v

    m = waveglow.WaveGlow(**config)
    if pretrained:
        m.load_state_dict(state_dict)
    return m
'''

WAVEGLOW_FILES: dict[str, str | None] = {
    "hubconf.py": _WAVEGLOW_HUBCONF,
    "waveglow/__init__.py": "",
    "waveglow/model.py": _WAVEGLOW_MODEL,
    "waveglow/entrypoints.py": _WAVEGLOW_ENTRYPOINTS,
}

# --------------------------------------------------------------------------------------------------
# NVIDIA/DeepLearningExamples PyTorch/SpeechSynthesis/HiFiGAN ``nvidia_hifigan``: the generator's config
# is read from the checkpoint (``ckpt["config"]``, made an ``AttrDict``), its state from
# ``ckpt["generator"]`` (DDP keys unwrapped), ``Generator.load_state_dict`` overridden to rename old
# keys, ``hifigan.remove_weight_norm()`` (a method walking ``ResBlock1``s) and a ``Denoiser`` whose
# ``bias_spec`` buffer is computed by running the generator on zeros in ``__init__``; returns
# ``(hifigan, train_setup, denoiser)``. A fork's ``nvidia_hifigan_generator`` returns the generator
# alone (what the user guide advises), ``jitable=True`` scripting its output convolution
# (``torch.jit.script`` of a submodule inside the entrypoint, as FastPitch's ``jitable`` does).
# Narrowed: 8 mel channels, 8 initial channels, two upsamplings, two ResBlock1 kernels.
# --------------------------------------------------------------------------------------------------
_HIFIGAN_HUBCONF = """dependencies = ["torch"]

from hifigan.entrypoints import nvidia_hifigan, nvidia_hifigan_generator  # noqa: E402,F401
"""

_HIFIGAN_COMMON_UTILS = """class AttrDict(dict):
    def __init__(self, *args, **kwargs):
        super(AttrDict, self).__init__(*args, **kwargs)
        self.__dict__ = self


def init_weights(m, mean=0.0, std=0.01):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        m.weight.data.normal_(mean, std)


def get_padding(kernel_size, dilation=1):
    return int((kernel_size * dilation - dilation) / 2)
"""

_HIFIGAN_STFT = '''import numpy as np
import torch
import torch.nn.functional as F
from scipy_free_window import hann


class STFT(torch.nn.Module):
    """STFT as 1D convolutions with a fixed Fourier basis (buffers)."""

    def __init__(self, filter_length=16, hop_length=4, win_length=16):
        super(STFT, self).__init__()
        self.filter_length = filter_length
        self.hop_length = hop_length
        self.win_length = win_length
        fourier_basis = np.fft.fft(np.eye(self.filter_length))
        cutoff = int((self.filter_length / 2 + 1))
        fourier_basis = np.vstack([np.real(fourier_basis[:cutoff, :]), np.imag(fourier_basis[:cutoff, :])])
        forward_basis = torch.FloatTensor(fourier_basis[:, None, :])
        inverse_basis = torch.FloatTensor(np.linalg.pinv(filter_length / hop_length * fourier_basis).T[:, None, :])
        fft_window = torch.from_numpy(hann(win_length)).float()
        forward_basis *= fft_window
        inverse_basis *= fft_window
        self.register_buffer("forward_basis", forward_basis.float())
        self.register_buffer("inverse_basis", inverse_basis.float())

    def transform(self, input_data):
        num_batches = input_data.size(0)
        num_samples = input_data.size(1)
        input_data = input_data.view(num_batches, 1, num_samples)
        input_data = F.pad(input_data.unsqueeze(1), (int(self.filter_length / 2), int(self.filter_length / 2), 0, 0), mode="reflect")
        input_data = input_data.squeeze(1)
        forward_transform = F.conv1d(input_data, self.forward_basis, stride=self.hop_length, padding=0)
        cutoff = int((self.filter_length / 2) + 1)
        real_part = forward_transform[:, :cutoff, :]
        imag_part = forward_transform[:, cutoff:, :]
        magnitude = torch.sqrt(real_part ** 2 + imag_part ** 2)
        phase = torch.atan2(imag_part.data, real_part.data)
        return magnitude, phase

    def inverse(self, magnitude, phase):
        recombine_magnitude_phase = torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=1)
        inverse_transform = F.conv_transpose1d(recombine_magnitude_phase, self.inverse_basis, stride=self.hop_length, padding=0)
        inverse_transform = inverse_transform[:, :, int(self.filter_length / 2):]
        inverse_transform = inverse_transform[:, :, :-int(self.filter_length / 2)]
        return inverse_transform
'''

# scipy.signal.get_window("hann", n, fftbins=True), without scipy (narrowed: the test installs no scipy)
_HIFIGAN_WINDOW = """import numpy as np


def hann(n):
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
"""

_HIFIGAN_MODELS = '''import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn import Conv1d, ConvTranspose1d
from torch.nn.utils import remove_weight_norm, weight_norm

from common.stft import STFT
from common.utils import AttrDict, init_weights, get_padding

LRELU_SLOPE = 0.1
NUM_MELS = 8


class ResBlock1(nn.Module):
    __constants__ = ["lrelu_slope"]

    def __init__(self, conf, channels, kernel_size=3, dilation=(1, 3, 5)):
        super().__init__()
        self.conf = conf
        self.lrelu_slope = LRELU_SLOPE
        ch, ks = channels, kernel_size
        self.convs1 = nn.Sequential(*[
            weight_norm(Conv1d(ch, ch, ks, 1, get_padding(ks, dilation[0]), dilation[0])),
            weight_norm(Conv1d(ch, ch, ks, 1, get_padding(ks, dilation[1]), dilation[1])),
            weight_norm(Conv1d(ch, ch, ks, 1, get_padding(ks, dilation[2]), dilation[2])),
        ])
        self.convs2 = nn.Sequential(*[
            weight_norm(Conv1d(ch, ch, ks, 1, get_padding(ks, 1))),
            weight_norm(Conv1d(ch, ch, ks, 1, get_padding(ks, 1))),
            weight_norm(Conv1d(ch, ch, ks, 1, get_padding(ks, 1))),
        ])
        self.convs1.apply(init_weights)
        self.convs2.apply(init_weights)

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = F.leaky_relu(x, self.lrelu_slope)
            xt = c1(xt)
            xt = F.leaky_relu(xt, self.lrelu_slope)
            xt = c2(xt)
            x = xt + x
        return x

    def remove_weight_norm(self):
        for l in self.convs1:
            remove_weight_norm(l)
        for l in self.convs2:
            remove_weight_norm(l)


class Generator(nn.Module):
    __constants__ = ["lrelu_slope", "num_kernels", "num_upsamples"]

    def __init__(self, conf):
        super().__init__()
        conf = AttrDict(conf)
        self.conf = conf
        self.num_kernels = len(conf.resblock_kernel_sizes)
        self.num_upsamples = len(conf.upsample_rates)
        self.conv_pre = weight_norm(Conv1d(NUM_MELS, conf.upsample_initial_channel, 7, 1, padding=3))
        self.lrelu_slope = LRELU_SLOPE
        resblock = ResBlock1

        self.ups = []
        for i, (u, k) in enumerate(zip(conf.upsample_rates, conf.upsample_kernel_sizes)):
            self.ups.append(weight_norm(
                ConvTranspose1d(conf.upsample_initial_channel // (2 ** i),
                                conf.upsample_initial_channel // (2 ** (i + 1)),
                                k, u, padding=(k - u) // 2)))
        self.ups = nn.Sequential(*self.ups)

        self.resblocks = []
        for i in range(len(self.ups)):
            resblock_list = []
            ch = conf.upsample_initial_channel // (2 ** (i + 1))
            for j, (k, d) in enumerate(zip(conf.resblock_kernel_sizes, conf.resblock_dilation_sizes)):
                resblock_list.append(resblock(conf, ch, k, d))
            resblock_list = nn.Sequential(*resblock_list)
            self.resblocks.append(resblock_list)
        self.resblocks = nn.Sequential(*self.resblocks)

        self.conv_post = weight_norm(Conv1d(ch, 1, 7, 1, padding=3))
        self.ups.apply(init_weights)
        self.conv_post.apply(init_weights)

    def load_state_dict(self, state_dict, strict=True):
        # Fallback for old checkpoints (pre-ONNX fix): resblocks.N.* -> resblocks.{N // k}.{N % k}.*
        new_sd = {}
        for k, v in state_dict.items():
            new_k = k
            if "resblocks" in k:
                parts = k.split(".")
                if len(parts) == 5:
                    layer = int(parts[1])
                    new_layer = f"{layer // self.num_kernels}.{layer % self.num_kernels}"
                    new_k = f"resblocks.{new_layer}.{'.'.join(parts[2:])}"
            new_sd[new_k] = v
        super().load_state_dict(new_sd, strict=strict)

    def forward(self, x):
        x = self.conv_pre(x)
        for upsample_layer, resblock_group in zip(self.ups, self.resblocks):
            x = F.leaky_relu(x, self.lrelu_slope)
            x = upsample_layer(x)
            xs = 0
            for resblock in resblock_group:
                xs += resblock(x)
            x = xs / self.num_kernels
        x = F.leaky_relu(x)
        x = self.conv_post(x)
        x = torch.tanh(x)
        return x

    def remove_weight_norm(self):
        print("HiFi-GAN: Removing weight norm.")
        for l in self.ups:
            remove_weight_norm(l)
        for group in self.resblocks:
            for block in group:
                block.remove_weight_norm()
        remove_weight_norm(self.conv_pre)
        remove_weight_norm(self.conv_post)


class Denoiser(nn.Module):
    """ Removes model bias from audio produced with hifigan """

    def __init__(self, hifigan, filter_length=16, n_overlap=4, win_length=16, mode="zeros", **infer_kw):
        super().__init__()
        w = next(p for name, p in hifigan.named_parameters() if name.endswith(".weight"))
        self.stft = STFT(filter_length=filter_length, hop_length=int(filter_length / n_overlap), win_length=win_length).to(w.device)
        mel_init = {"zeros": torch.zeros, "normal": torch.randn}[mode]
        mel_input = mel_init((1, NUM_MELS, 11), dtype=w.dtype, device=w.device)
        with torch.no_grad():
            bias_audio = hifigan(mel_input, **infer_kw).float()
            if len(bias_audio.size()) > 2:
                bias_audio = bias_audio.squeeze(0)
            elif len(bias_audio.size()) < 2:
                bias_audio = bias_audio.unsqueeze(0)
            assert len(bias_audio.size()) == 2
            bias_spec, _ = self.stft.transform(bias_audio)
        self.register_buffer("bias_spec", bias_spec[:, :, 0][:, :, None])

    def forward(self, audio, strength=0.1):
        audio_spec, audio_angles = self.stft.transform(audio.float())
        audio_spec_denoised = audio_spec - self.bias_spec * strength
        audio_spec_denoised = torch.clamp(audio_spec_denoised, 0.0)
        audio_denoised = self.stft.inverse(audio_spec_denoised, audio_angles)
        return audio_denoised
'''

_HIFIGAN_ENTRYPOINTS = '''import torch


def checkpoint_from_distributed(state_dict):
    ret = False
    for key, _ in state_dict.items():
        if key.find("module.") != -1:
            ret = True
            break
    return ret


def unwrap_distributed(state_dict):
    new_state_dict = {}
    for key, value in state_dict.items():
        new_key = key.replace("module.1.", "")
        new_key = new_key.replace("module.", "")
        new_state_dict[new_key] = value
    return new_state_dict


def _generator(pretrained, kwargs):
    from hifigan import models as vocoder

    if pretrained:
        checkpoint = "@HIFIGAN_GEN@"
        ckpt = torch.hub.load_state_dict_from_url(checkpoint, map_location="cpu", progress=False)
        state_dict = ckpt["generator"]
        if checkpoint_from_distributed(state_dict):
            state_dict = unwrap_distributed(state_dict)
        config = ckpt["config"]
        train_setup = ckpt.get("train_setup", {})
    else:
        config = {"upsample_rates": [2, 2], "upsample_kernel_sizes": [4, 4],
                  "upsample_initial_channel": 8, "resblock": "1", "resblock_kernel_sizes": [3, 5],
                  "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]]}
        for k, v in kwargs.items():
            if k in config.keys():
                config[k] = v
        train_setup = {}
        state_dict = None
    hifigan = vocoder.Generator(config)
    return vocoder, hifigan, state_dict, train_setup


def nvidia_hifigan(pretrained=True, **kwargs):
    """HiFi-GAN generator, its training setup and a denoiser (as NVIDIA's hub returns them)."""
    fp16 = "model_math" in kwargs and kwargs["model_math"] == "fp16"
    vocoder, hifigan, state_dict, train_setup = _generator(pretrained, kwargs)
    denoiser = None
    if pretrained:
        hifigan.load_state_dict(state_dict)
        hifigan.remove_weight_norm()
        denoiser = vocoder.Denoiser(hifigan, win_length=16)
    if fp16:
        hifigan.half()
        denoiser.half()
    return hifigan, train_setup, denoiser


def nvidia_hifigan_generator(pretrained=True, jitable=False, **kwargs):
    """The generator alone, weight norm removed (a fork's entrypoint: one model per entrypoint)."""
    _, hifigan, state_dict, _ = _generator(pretrained, kwargs)
    if pretrained:
        hifigan.load_state_dict(state_dict)
        hifigan.remove_weight_norm()
    if jitable:
        # FastPitch-style ``jitable``: TorchScript where the layer allows it (here the output convolution)
        hifigan.conv_post = torch.jit.script(hifigan.conv_post)
    return hifigan
'''

HIFIGAN_FILES: dict[str, str | None] = {
    "hubconf.py": _HIFIGAN_HUBCONF,
    "common/__init__.py": "",
    "common/utils.py": _HIFIGAN_COMMON_UTILS,
    "common/stft.py": _HIFIGAN_STFT.replace("from scipy_free_window import hann", "from common.window import hann"),
    "common/window.py": _HIFIGAN_WINDOW,
    "hifigan/__init__.py": "",
    "hifigan/models.py": _HIFIGAN_MODELS,
    "hifigan/entrypoints.py": _HIFIGAN_ENTRYPOINTS,
}

# --------------------------------------------------------------------------------------------------
# A user's own checkout, loaded as ``torch.hub.load("path/to/checkout", "tinynet", source="local")``:
# hubconf.py imports a sibling package (``tinynet/``) that torch.hub finds because the directory is put
# first on ``sys.path``; the model reads nothing but its own files. ``LOCAL_EDIT`` is the uncommitted
# edit the test makes after ``git commit`` (a wider hidden layer and another activation).
# --------------------------------------------------------------------------------------------------
_LOCAL_HUBCONF = '''"""Tiny nets from my experiments."""
dependencies = ["torch"]

from tinynet.blocks import TinyNet  # noqa: E402


def tinynet(width=8, **kwargs):
    """A two-layer MLP with a residual block."""
    return TinyNet(width=width, **kwargs)
'''

_LOCAL_BLOCKS = """import torch
from torch import nn

from .act import ACT


class Residual(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x):
        return x + ACT(self.fc(x))


class TinyNet(nn.Module):
    def __init__(self, width=8, classes=3):
        super().__init__()
        self.stem = nn.Linear(6, width)
        self.block = Residual(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.block(torch.relu(self.stem(x))))
"""

LOCAL_FILES: dict[str, str | None] = {
    "hubconf.py": _LOCAL_HUBCONF,
    "tinynet/__init__.py": "",
    "tinynet/act.py": "import torch\n\nACT = torch.tanh\n",
    "tinynet/blocks.py": _LOCAL_BLOCKS,
}
LOCAL_EDIT: dict[str, str] = {"tinynet/act.py": "import torch\n\nACT = torch.sigmoid  # uncommitted: trying sigmoid\n"}

# --------------------------------------------------------------------------------------------------
# pytorch/fairseq's hubconf: ``dependencies`` listed, then checked by the hubconf itself at import
# (``importlib.import_module`` in a loop, ``hydra`` reported under its pypi name ``hydra-core``) and
# ``RuntimeError("Missing dependencies: ...")`` raised before any fairseq import; models are exposed
# from a registry as ``functools.partial(cls.from_pretrained, name)``. Narrowed: the registry holds one
# model class.
# --------------------------------------------------------------------------------------------------
_FAIRSEQ_HUBCONF = '''# Copyright (c) Facebook, Inc. and its affiliates.
"""isort:skip_file"""

import functools
import importlib


dependencies = [
    "dataclasses",
    "hydra",
    "numpy",
    "omegaconf",
    "regex",
    "requests",
    "torch",
]


# Check for required dependencies and raise a RuntimeError if any are missing.
missing_deps = []
for dep in dependencies:
    try:
        importlib.import_module(dep)
    except ImportError:
        # Hack: the hydra package is provided under the "hydra-core" name in
        # pypi. We don't want the user mistakenly calling `pip install hydra`
        # since that will install an unrelated package.
        if dep == "hydra":
            dep = "hydra-core"
        missing_deps.append(dep)
if len(missing_deps) > 0:
    raise RuntimeError("Missing dependencies: {}".format(", ".join(missing_deps)))


# only do fairseq imports after checking for dependencies
from fairseq.models import MODEL_REGISTRY  # noqa


# automatically expose models defined in FairSeq
for _model_type, _cls in MODEL_REGISTRY.items():
    for model_name in _cls.hub_models().keys():
        globals()[model_name] = functools.partial(
            _cls.from_pretrained,
            model_name,
        )
'''

_FAIRSEQ_MODELS = """import torch

MODEL_REGISTRY = {}


class TinyTransformer(torch.nn.Module):
    @classmethod
    def hub_models(cls):
        return {"transformer.tiny": "https://dl.fbaipublicfiles.com/fairseq/models/tiny.tar.gz"}

    @classmethod
    def from_pretrained(cls, model_name_or_path, **kwargs):
        return cls()

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)


MODEL_REGISTRY["transformer"] = TinyTransformer
"""

FAIRSEQ_FILES: dict[str, str | None] = {
    "hubconf.py": _FAIRSEQ_HUBCONF,
    "fairseq/__init__.py": "",
    "fairseq/models/__init__.py": _FAIRSEQ_MODELS,
}

# --------------------------------------------------------------------------------------------------
# huggingface/transformers' hubconf (before it was removed): ``src/`` appended to ``sys.path``, then
# ``from transformers import AutoConfig, AutoModel, ..., add_start_docstrings`` at import, *before*
# ``dependencies`` (what transformers needs at run time) is even assigned; the package's ``__init__``
# imports its tokenizers, and the XLNet one imports ``sentencepiece`` at module level. Entrypoints are
# ``add_start_docstrings``-decorated and forward to ``AutoModel.from_pretrained``. Narrowed: one config
# class and one model class.
# --------------------------------------------------------------------------------------------------
_TRANSFORMERS_HUBCONF = """import os
import sys

SRC_DIR = os.path.join(os.path.dirname(__file__), "src")
sys.path.append(SRC_DIR)


from transformers import (
    AutoConfig,
    AutoModel,
    add_start_docstrings,
)


dependencies = ["torch", "numpy", "tokenizers", "filelock", "requests", "tqdm", "regex", "sentencepiece", "sacremoses", "importlib_metadata"]


@add_start_docstrings(AutoConfig.__doc__)
def config(*args, **kwargs):
    return AutoConfig.from_pretrained(*args, **kwargs)


@add_start_docstrings(AutoModel.__doc__)
def model(*args, **kwargs):
    return AutoModel.from_pretrained(*args, **kwargs)
"""

_TRANSFORMERS_INIT = """__version__ = "2.11.0"

from .file_utils import add_start_docstrings
from .modeling_auto import AutoConfig, AutoModel
from .tokenization_xlnet import XLNetTokenizer
"""

_TRANSFORMERS_FILE_UTILS = """def add_start_docstrings(*docstr):
    def docstring_decorator(fn):
        fn.__doc__ = "".join(docstr) + (fn.__doc__ if fn.__doc__ is not None else "")
        return fn

    return docstring_decorator
"""

_TRANSFORMERS_MODELING = '''import torch


class AutoConfig:
    """Instantiates one of the configuration classes of the library from a pretrained name."""

    @classmethod
    def from_pretrained(cls, name, **kwargs):
        return {"hidden_size": 4, **kwargs}


class AutoModel:
    """Instantiates one of the base model classes of the library from a pretrained name."""

    @classmethod
    def from_pretrained(cls, name, **kwargs):
        return torch.nn.Linear(4, 4)
'''

_TRANSFORMERS_XLNET_TOKENIZER = """import os
from shutil import copyfile

import sentencepiece as spm


class XLNetTokenizer:
    def __init__(self, vocab_file):
        self.sp_model = spm.SentencePieceProcessor()
        self.sp_model.Load(vocab_file)
"""

TRANSFORMERS_FILES: dict[str, str | None] = {
    "hubconf.py": _TRANSFORMERS_HUBCONF,
    "src/transformers/__init__.py": _TRANSFORMERS_INIT,
    "src/transformers/file_utils.py": _TRANSFORMERS_FILE_UTILS,
    "src/transformers/modeling_auto.py": _TRANSFORMERS_MODELING,
    "src/transformers/tokenization_xlnet.py": _TRANSFORMERS_XLNET_TOKENIZER,
}

# --------------------------------------------------------------------------------------------------
# facebookresearch/pytorchvideo ``mvit_base_16x4``: ``hub_model_builder`` builds
# ``create_multiscale_vision_transformers(**default_config, **kwargs)`` and loads ``checkpoint["model_state"]``.
# New here: pooling attention (``MultiScaleAttention`` pools q, k and v with depthwise ``Conv3d`` +
# ``LayerNorm`` after reshaping tokens to ``(T, H, W)``, the class token split off and put back), the
# token grid ``thw_shape`` threaded through the blocks as a Python list, key/value strides computed per
# block from ``pool_kv_stride_adaptive`` and divided by each query stride, channel and head multipliers
# per depth (``embed_dim_mul``/``atten_head_mul``), a max-pooled skip path, and
# ``SpatioTemporalClsPositionalEncoding``'s separate spatial/temporal ``nn.Parameter``s whose shapes come
# from the patch grid computed in the builder. Narrowed: 16x16 frames of 4, embed_dim 8, depth 3.
# --------------------------------------------------------------------------------------------------
_MVIT_HUBCONF = """dependencies = ["torch"]
from pytorchvideo.models.hub import mvit_base_16x4  # noqa: F401, E402
"""

_MVIT_HUB_INIT = "from .vision_transformers import mvit_base_16x4\n"

_MVIT_HUB_UTILS = """from typing import Any, Callable, Dict, Optional

import torch.nn as nn
from torch.hub import load_state_dict_from_url


MODEL_ZOO_ROOT_DIR = "@MVIT_ROOT@"


def hub_model_builder(
    model_builder_func: Callable,
    pretrained: bool = False,
    progress: bool = True,
    checkpoint_path: str = "",
    default_config: Optional[Dict[Any, Any]] = None,
    **kwargs: Any,
) -> nn.Module:
    if pretrained:
        assert len(kwargs) == 0, "If pretrained is True, will use the default setting"
    if default_config is not None:
        for argument, value in default_config.items():
            if kwargs.get(argument) is None:
                kwargs[argument] = value
    model = model_builder_func(**kwargs)
    if pretrained:
        checkpoint = load_state_dict_from_url(checkpoint_path, progress=progress, map_location="cpu")
        model.load_state_dict(checkpoint["model_state"])
    return model
"""

_MVIT_HUB_VIT = '''from typing import Any

import torch.nn as nn
from pytorchvideo.models.vision_transformers import create_multiscale_vision_transformers

from .utils import MODEL_ZOO_ROOT_DIR, hub_model_builder


checkpoint_paths = {
    "mvit_base_16x4": "{}/kinetics/MVIT_B_16x4.pyth".format(MODEL_ZOO_ROOT_DIR),
}

mvit_video_base_config = {
    "spatial_size": 16,
    "temporal_size": 4,
    "embed_dim_mul": [[1, 2.0]],
    "atten_head_mul": [[1, 2.0]],
    "pool_q_stride_size": [[1, 1, 2, 2]],
    "pool_kv_stride_adaptive": [1, 2, 2],
    "pool_kvq_kernel": [3, 3, 3],
}


def mvit_base_16x4(pretrained: bool = False, progress: bool = True, **kwargs: Any) -> nn.Module:
    """
    Multiscale Vision Transformers model architecture trained with an 16x4
    setting on the Kinetics400 dataset.
    """
    return hub_model_builder(
        model_builder_func=create_multiscale_vision_transformers,
        pretrained=pretrained,
        progress=progress,
        checkpoint_path=checkpoint_paths["mvit_base_16x4"],
        default_config=mvit_video_base_config,
        **kwargs,
    )
'''

_MVIT_POSITIONAL = '''from typing import Tuple

import torch
from torch import nn


class SpatioTemporalClsPositionalEncoding(nn.Module):
    """
    Add a cls token and apply a spatiotemporal encoding to a tensor.
    """

    def __init__(self, embed_dim: int, patch_embed_shape: Tuple[int, int, int], sep_pos_embed: bool = True, has_cls: bool = True) -> None:
        super().__init__()
        assert len(patch_embed_shape) == 3, "Patch_embed_shape should be in the form of (T, H, W)."
        self.cls_embed_on = has_cls
        self.sep_pos_embed = sep_pos_embed
        self._patch_embed_shape = tuple(patch_embed_shape)
        self.num_spatial_patch = patch_embed_shape[1] * patch_embed_shape[2]
        self.num_temporal_patch = patch_embed_shape[0]

        if self.cls_embed_on:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        if self.sep_pos_embed:
            self.pos_embed_spatial = nn.Parameter(torch.zeros(1, self.num_spatial_patch, embed_dim))
            self.pos_embed_temporal = nn.Parameter(torch.zeros(1, self.num_temporal_patch, embed_dim))
            if self.cls_embed_on:
                self.pos_embed_class = nn.Parameter(torch.zeros(1, 1, embed_dim))
        else:
            num_patches = self.num_spatial_patch * self.num_temporal_patch + (1 if self.cls_embed_on else 0)
            self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, embed_dim))

    @property
    def patch_embed_shape(self):
        return self._patch_embed_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        if self.cls_embed_on:
            cls_tokens = self.cls_token.expand(B, -1, -1)
            x = torch.cat((cls_tokens, x), dim=1)
        if self.sep_pos_embed:
            pos_embed = self.pos_embed_spatial.repeat(1, self.num_temporal_patch, 1) + torch.repeat_interleave(
                self.pos_embed_temporal, self.num_spatial_patch, dim=1)
            if self.cls_embed_on:
                pos_embed = torch.cat([self.pos_embed_class, pos_embed], 1)
            x = x + pos_embed
        else:
            x = x + self.pos_embed
        return x
'''

_MVIT_ATTENTION = """from typing import List, Optional, Tuple

import numpy
import torch
import torch.nn as nn


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, dropout_rate=0.0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _attention_pool(tensor: torch.Tensor, pool: Optional[nn.Module], thw_shape: List[int], has_cls_embed: bool = True, norm: Optional[nn.Module] = None) -> Tuple[torch.Tensor, List[int]]:
    if pool is None:
        return tensor, thw_shape
    tensor_dim = tensor.ndim
    if tensor_dim == 4:
        pass
    elif tensor_dim == 3:
        tensor = tensor.unsqueeze(1)
    else:
        raise NotImplementedError(f"Unsupported input dimension {tensor.shape}")

    if has_cls_embed:
        cls_tok, tensor = tensor[:, :, :1, :], tensor[:, :, 1:, :]

    B, N, L, C = tensor.shape
    T, H, W = thw_shape
    tensor = tensor.reshape(B * N, T, H, W, C).permute(0, 4, 1, 2, 3).contiguous()
    tensor = pool(tensor)

    thw_shape = [tensor.shape[2], tensor.shape[3], tensor.shape[4]]
    L_pooled = tensor.shape[2] * tensor.shape[3] * tensor.shape[4]
    tensor = tensor.reshape(B, N, C, L_pooled).transpose(2, 3)
    if has_cls_embed:
        tensor = torch.cat((cls_tok, tensor), dim=2)
    if norm is not None:
        tensor = norm(tensor)
    if tensor_dim == 3:
        tensor = tensor.squeeze(1)
    return tensor, thw_shape


class MultiScaleAttention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=False, kernel_q=(1, 1, 1), kernel_kv=(1, 1, 1), stride_q=(1, 1, 1), stride_kv=(1, 1, 1), norm_layer=nn.LayerNorm, has_cls_embed=True, pool_mode="conv"):
        super().__init__()
        assert pool_mode in ["conv", "avg", "max"]
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.has_cls_embed = has_cls_embed
        padding_q = [int(q // 2) for q in kernel_q]
        padding_kv = [int(kv // 2) for kv in kernel_kv]

        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

        # Skip pooling with kernel and stride size of (1, 1, 1).
        if numpy.prod(kernel_q) == 1 and numpy.prod(stride_q) == 1:
            kernel_q = ()
        if numpy.prod(kernel_kv) == 1 and numpy.prod(stride_kv) == 1:
            kernel_kv = ()

        self.pool_q = nn.Conv3d(head_dim, head_dim, kernel_q, stride=stride_q, padding=padding_q, groups=head_dim, bias=False) if len(kernel_q) > 0 else None
        self.norm_q = norm_layer(head_dim) if len(kernel_q) > 0 else None
        self.pool_k = nn.Conv3d(head_dim, head_dim, kernel_kv, stride=stride_kv, padding=padding_kv, groups=head_dim, bias=False) if len(kernel_kv) > 0 else None
        self.norm_k = norm_layer(head_dim) if len(kernel_kv) > 0 else None
        self.pool_v = nn.Conv3d(head_dim, head_dim, kernel_kv, stride=stride_kv, padding=padding_kv, groups=head_dim, bias=False) if len(kernel_kv) > 0 else None
        self.norm_v = norm_layer(head_dim) if len(kernel_kv) > 0 else None

    def forward(self, x: torch.Tensor, thw_shape: List[int]) -> Tuple[torch.Tensor, List[int]]:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q, q_shape = _attention_pool(q, self.pool_q, thw_shape, has_cls_embed=self.has_cls_embed, norm=self.norm_q)
        k, _ = _attention_pool(k, self.pool_k, thw_shape, has_cls_embed=self.has_cls_embed, norm=self.norm_k)
        v, _ = _attention_pool(v, self.pool_v, thw_shape, has_cls_embed=self.has_cls_embed, norm=self.norm_v)

        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        N = q.shape[2]
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        return x, q_shape


class MultiScaleBlock(nn.Module):
    def __init__(self, dim, dim_out, num_heads, mlp_ratio=4.0, qkv_bias=False, act_layer=nn.GELU, norm_layer=nn.LayerNorm, kernel_q=(1, 1, 1), kernel_kv=(1, 1, 1), stride_q=(1, 1, 1), stride_kv=(1, 1, 1), has_cls_embed=True):
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.norm1 = norm_layer(dim)
        kernel_skip = [s + 1 if s > 1 else s for s in stride_q]
        stride_skip = stride_q
        padding_skip = [int(skip // 2) for skip in kernel_skip]
        self.attn = MultiScaleAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias, kernel_q=kernel_q, kernel_kv=kernel_kv, stride_q=stride_q, stride_kv=stride_kv, norm_layer=norm_layer, has_cls_embed=has_cls_embed)
        self.norm2 = norm_layer(dim)
        mlp_hidden_dim = int(dim * mlp_ratio)
        self.has_cls_embed = has_cls_embed
        self.mlp = Mlp(in_features=dim, hidden_features=mlp_hidden_dim, out_features=dim_out, act_layer=act_layer)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)
        self.pool_skip = nn.MaxPool3d(kernel_skip, stride_skip, padding_skip, ceil_mode=False) if len(kernel_skip) > 0 and numpy.prod(kernel_skip) > 1 else None

    def forward(self, x: torch.Tensor, thw_shape: List[int]) -> Tuple[torch.Tensor, List[int]]:
        x_block, thw_shape_new = self.attn(self.norm1(x), thw_shape)
        x_res, _ = _attention_pool(x, self.pool_skip, thw_shape, has_cls_embed=self.has_cls_embed)
        x = x_res + x_block
        x_norm = self.norm2(x)
        x_mlp = self.mlp(x_norm)
        if self.dim != self.dim_out:
            x = self.proj(x_norm)
        x = x + x_mlp
        return x, thw_shape_new
"""

_MVIT_MODEL = """from functools import partial
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from pytorchvideo.layers.attention import MultiScaleBlock
from pytorchvideo.layers.positional_encoding import SpatioTemporalClsPositionalEncoding


def round_width(width, multiplier, min_width=1, divisor=1):
    if not multiplier:
        return width
    width *= multiplier
    min_width = min_width or divisor
    width_out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if width_out < 0.9 * width:
        width_out += divisor
    return int(width_out)


class PatchEmbed(nn.Module):
    def __init__(self, *, patch_model: nn.Module = None) -> None:
        super().__init__()
        self.patch_model = patch_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_model(x)
        # B C (T) H W -> B (T)HW C
        return x.flatten(2).transpose(1, 2)


class VisionTransformerBasicHead(nn.Module):
    def __init__(self, sequence_pool: nn.Module = None, dropout: nn.Module = None, proj: nn.Module = None) -> None:
        super().__init__()
        self.sequence_pool = sequence_pool
        self.dropout = dropout
        self.proj = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, 0]  # the class token (SequencePool "cls")
        if self.dropout is not None:
            x = self.dropout(x)
        return self.proj(x)


class MultiscaleVisionTransformers(nn.Module):
    def __init__(self, *, patch_embed, cls_positional_encoding, pos_drop, blocks, norm_embed, head) -> None:
        super().__init__()
        assert hasattr(cls_positional_encoding, "patch_embed_shape"), "cls_positional_encoding should have property patch_embed_shape."
        self.patch_embed = patch_embed or torch.nn.Identity()
        self.cls_positional_encoding = cls_positional_encoding
        self.pos_drop = pos_drop or torch.nn.Identity()
        self.blocks = blocks
        self.norm_embed = norm_embed or torch.nn.Identity()
        self.head = head or torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = self.cls_positional_encoding(x)
        x = self.pos_drop(x)
        thw = self.cls_positional_encoding.patch_embed_shape
        for blk in self.blocks:
            x, thw = blk(x, thw)
        x = self.norm_embed(x)
        x = self.head(x)
        return x


def create_multiscale_vision_transformers(
    *,
    spatial_size,
    temporal_size,
    depth: int = 3,
    input_channels: int = 3,
    patch_embed_dim: int = 8,
    conv_patch_embed_kernel: Tuple[int] = (3, 7, 7),
    conv_patch_embed_stride: Tuple[int] = (2, 4, 4),
    conv_patch_embed_padding: Tuple[int] = (1, 3, 3),
    use_2d_patch: bool = False,
    num_heads: int = 1,
    mlp_ratio: float = 2.0,
    qkv_bias: bool = True,
    dropout_rate_block: float = 0.0,
    head_dropout_rate: float = 0.5,
    embed_dim_mul: Optional[List[List[int]]] = None,
    atten_head_mul: Optional[List[List[int]]] = None,
    pool_q_stride_size: Optional[List[List[int]]] = None,
    pool_kv_stride_size: Optional[List[List[int]]] = None,
    pool_kv_stride_adaptive: Optional[List[int]] = None,
    pool_kvq_kernel: Optional[List[int]] = None,
    head=VisionTransformerBasicHead,
    num_classes: int = 5,
) -> nn.Module:
    norm_layer = partial(nn.LayerNorm, eps=1e-6)
    if isinstance(spatial_size, int):
        spatial_size = (spatial_size, spatial_size)
    conv_patch_op = nn.Conv2d if use_2d_patch else nn.Conv3d
    patch_embed = PatchEmbed(patch_model=conv_patch_op(
        in_channels=input_channels, out_channels=patch_embed_dim, kernel_size=conv_patch_embed_kernel,
        stride=conv_patch_embed_stride, padding=conv_patch_embed_padding))

    input_dims = [temporal_size, spatial_size[0], spatial_size[1]]
    patch_embed_shape = [input_dims[i] // conv_patch_embed_stride[i] for i in range(len(input_dims))]
    cls_positional_encoding = SpatioTemporalClsPositionalEncoding(embed_dim=patch_embed_dim, patch_embed_shape=patch_embed_shape, sep_pos_embed=True, has_cls=True)

    dim_mul, head_mul = torch.ones(depth + 1), torch.ones(depth + 1)
    if embed_dim_mul is not None:
        for i in range(len(embed_dim_mul)):
            dim_mul[embed_dim_mul[i][0]] = embed_dim_mul[i][1]
    if atten_head_mul is not None:
        for i in range(len(atten_head_mul)):
            head_mul[atten_head_mul[i][0]] = atten_head_mul[i][1]

    mvit_blocks = nn.ModuleList()
    pool_q = [[] for i in range(depth)]
    pool_kv = [[] for i in range(depth)]
    stride_q = [[] for i in range(depth)]
    stride_kv = [[] for i in range(depth)]

    if pool_q_stride_size is not None:
        for i in range(len(pool_q_stride_size)):
            stride_q[pool_q_stride_size[i][0]] = pool_q_stride_size[i][1:]
            if pool_kvq_kernel is not None:
                pool_q[pool_q_stride_size[i][0]] = pool_kvq_kernel
            else:
                pool_q[pool_q_stride_size[i][0]] = [s + 1 if s > 1 else s for s in pool_q_stride_size[i][1:]]

    # If POOL_KV_STRIDE_ADAPTIVE is not None, initialize POOL_KV_STRIDE.
    if pool_kv_stride_adaptive is not None:
        _stride_kv = pool_kv_stride_adaptive
        pool_kv_stride_size = []
        for i in range(depth):
            if len(stride_q[i]) > 0:
                _stride_kv = [max(_stride_kv[d] // stride_q[i][d], 1) for d in range(len(_stride_kv))]
            pool_kv_stride_size.append([i] + _stride_kv)

    if pool_kv_stride_size is not None:
        for i in range(len(pool_kv_stride_size)):
            stride_kv[pool_kv_stride_size[i][0]] = pool_kv_stride_size[i][1:]
            if pool_kvq_kernel is not None:
                pool_kv[pool_kv_stride_size[i][0]] = pool_kvq_kernel
            else:
                pool_kv[pool_kv_stride_size[i][0]] = [s + 1 if s > 1 else s for s in pool_kv_stride_size[i][1:]]

    for i in range(depth):
        num_heads = round_width(num_heads, head_mul[i], min_width=1, divisor=1)
        patch_embed_dim = round_width(patch_embed_dim, dim_mul[i], divisor=num_heads)
        dim_out = round_width(patch_embed_dim, dim_mul[i + 1], divisor=round_width(num_heads, head_mul[i + 1]))
        mvit_blocks.append(MultiScaleBlock(
            dim=patch_embed_dim, dim_out=dim_out, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            norm_layer=norm_layer, kernel_q=pool_q[i], kernel_kv=pool_kv[i],
            stride_q=stride_q[i], stride_kv=stride_kv[i]))

    embed_dim = dim_out
    norm_embed = norm_layer(embed_dim)
    head_model = head(dropout=nn.Dropout(head_dropout_rate), proj=nn.Linear(embed_dim, num_classes)) if head is not None else None
    return MultiscaleVisionTransformers(
        patch_embed=patch_embed, cls_positional_encoding=cls_positional_encoding, pos_drop=None,
        blocks=mvit_blocks, norm_embed=norm_embed, head=head_model)
"""

MVIT_FILES: dict[str, str | None] = {
    "hubconf.py": _MVIT_HUBCONF,
    "pytorchvideo/__init__.py": "",
    "pytorchvideo/layers/__init__.py": "",
    "pytorchvideo/layers/attention.py": _MVIT_ATTENTION,
    "pytorchvideo/layers/positional_encoding.py": _MVIT_POSITIONAL,
    "pytorchvideo/models/__init__.py": "",
    "pytorchvideo/models/vision_transformers.py": _MVIT_MODEL,
    "pytorchvideo/models/hub/__init__.py": _MVIT_HUB_INIT,
    "pytorchvideo/models/hub/utils.py": _MVIT_HUB_UTILS,
    "pytorchvideo/models/hub/vision_transformers.py": _MVIT_HUB_VIT,
}
