"""Encoder and decoder networks, MLP and convolutional, sized from the data's shape, and your own.

The encoder maps an image batch ``x: (B, C, H, W)`` to the parameters of the diagonal Gaussian
posterior q(z|x): ``mean`` and ``log_var``, each ``(B, D)``. The decoder maps latents
``z: (..., D)`` to the likelihood's parameters ``(..., K*C, H, W)`` (K parameters per pixel:
1 for Bernoulli or a fixed-scale Gaussian, 2 with a scale learned per pixel from z,
``learn_scale: decoder``). Convolutional decoders mirror their encoder, restoring each
intermediate resolution exactly, so any input size works (28x28x1, 28x20x1, 32x32x3, 8x8x3).

**Your own encoder and decoder** (the contract of pythae's ``BaseEncoder``/``BaseDecoder``, in
vaelab's shapes; D = ``model.latent_dim``, ``(C, H, W)`` the data's image shape):

* ``encoder(x)``, ``x: (B, C, H, W)`` float32 in [0, 1] (0 or 1 under binarisation), returns
  the posterior's ``(mean, log_var)``, each ``(B, D)``: an :class:`EncoderOutput` or a plain
  tuple;
* ``decoder(z)``, ``z: (N, D)``, returns the likelihood's parameters ``(N, K*C, H, W)``, with no
  output non-linearity (the likelihood reads them: logits for Bernoulli, a mean through a
  sigmoid for Gaussian and Laplace). vaelab calls it with 2-D ``z`` only (the samples of
  ``(S, B, D)`` are flattened to ``(S*B, D)`` and the output reshaped back), so a decoder for
  ``(N, D)`` is enough. :func:`decoder_channels` gives K*C.

Give them as modules, ``vaelab.train(config, encoder=..., decoder=...)`` (``model.network``
becomes :data:`CUSTOM`), or register a builder under a name, :func:`register_network`, which
``model.network: NAME`` then builds (YAML, ``--network``, sweeps; ``vaelab --import MODULE``
imports the module that registers it). vaelab wraps them with the config's prior (any: the
VampPrior encodes its pseudo-inputs with your encoder) and likelihood; :func:`check_networks`
runs each once on two examples when the model is built and names a broken contract in one line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError, option

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


class EncoderOutput(NamedTuple):
    """Parameters of q(z|x) = N(mean, diag(exp(log_var))); each (B, D)."""

    mean: torch.Tensor
    log_var: torch.Tensor


def mlp(sizes: list[int], activation: str, batch_norm: bool = False, dropout: float = 0.0) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ...``, each followed by [batch norm], the
    activation and [dropout]."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers.append(nn.Linear(n_in, n_out))
        if batch_norm:
            layers.append(nn.BatchNorm1d(n_out))
        layers.append(ACTIVATIONS[activation]())
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class _Heads(nn.Module):
    """The mean and log-variance heads of q(z|x)."""

    def __init__(self, n_in: int, latent_dim: int):
        super().__init__()
        self.mean = nn.Linear(n_in, latent_dim)
        self.log_var = nn.Linear(n_in, latent_dim)

    def forward(self, h: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(self.mean(h), self.log_var(h))


class MLPEncoder(nn.Module):
    """Flatten ``x`` and apply an MLP with ``hidden`` widths, then the mean and log-variance heads
    (the encoder of Kingma & Welling 2014, Appendix C.2)."""

    def __init__(self, image_shape: tuple[int, int, int], hidden: list[int], latent_dim: int,
                 activation: str = "relu", batch_norm: bool = False, dropout: float = 0.0):
        super().__init__()
        n_in = math.prod(image_shape)
        self.body = mlp([n_in, *hidden], activation, batch_norm, dropout)
        self.heads = _Heads(hidden[-1] if hidden else n_in, latent_dim)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        return self.heads(self.body(x.flatten(1)))  # (B, hidden[-1]) -> 2 x (B, D)


class MLPDecoder(nn.Module):
    """MLP from ``z: (..., D)`` through ``hidden`` widths to ``params_per_pixel`` parameters per
    pixel, reshaped to ``(..., params_per_pixel * C, H, W)``. No output non-linearity: the
    likelihood interprets the raw outputs (e.g. as logits)."""

    def __init__(self, image_shape: tuple[int, int, int], hidden: list[int], latent_dim: int,
                 activation: str = "relu", params_per_pixel: int = 1, batch_norm: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        c, h, w = image_shape
        self.out_shape = (params_per_pixel * c, h, w)
        self.body = mlp([latent_dim, *hidden], activation, batch_norm, dropout)
        self.out = nn.Linear(hidden[-1] if hidden else latent_dim, params_per_pixel * c * h * w)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        out = self.out(self.body(z.reshape(-1, z.shape[-1])))  # batch norm needs (N, features)
        return out.reshape(*lead, *self.out_shape)


@dataclass(frozen=True)
class ConvSpec:
    """A convolutional stack: ``channels[i]`` outputs with ``kernels[i]``, each halving the
    resolution by 2x2 max-pooling (``downsample='pool'``) or stride 2 (``'stride'``)."""

    channels: tuple[int, ...]
    kernels: tuple[int, ...]
    downsample: str = "pool"
    upsample: str = "transpose"
    batch_norm: bool = False
    fc_hidden: bool = True  # whether `hidden` fully connected layers follow the convolutions

    def sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The resolution before each layer and after the last: ``len(channels) + 1`` pairs."""
        sizes = [(height, width)]
        for k in self.kernels:
            h, w = sizes[-1]
            if self.downsample == "pool":  # 'same' convolution, then floor-halving max-pool
                h, w = (h + 2 * (k // 2) - k + 1) // 2, (w + 2 * (k // 2) - k + 1) // 2
            else:
                p = (k - 1) // 2
                h, w = (h + 2 * p - k) // 2 + 1, (w + 2 * p - k) // 2 + 1
            sizes.append((h, w))
        return sizes


CONV_PRESETS = {
    # one study's network: 3x3->32, 7x7->64, 5x5->128, each with 2x2 max-pooling, then one FC layer
    "conv3": ConvSpec(channels=(32, 64, 128), kernels=(3, 7, 5), downsample="pool", fc_hidden=False),
    # DCGAN (Radford et al. 2016) style for 32x32 colour images: 4x4 stride-2 convs with batch norm
    "dcgan": ConvSpec(channels=(64, 128, 256), kernels=(4, 4, 4), downsample="stride", batch_norm=True,
                      fc_hidden=False),
}

CUSTOM = "custom"
"""``model.network`` of a run trained with encoder and decoder modules given from Python
(``vaelab.train(config, encoder=..., decoder=...)``); its run directory keeps their weights."""

class Network(NamedTuple):
    """A registered encoder/decoder family (an entry of :data:`NETWORKS`)."""

    build: Callable[[ModelConfig, tuple[int, int, int], int, int], tuple[nn.Module, nn.Module]]
    """``build(model_config, image_shape, params_per_pixel, num_classes) -> (encoder, decoder)``
    (``num_classes`` 0 unless the VAE is conditional: the encoder then takes the one-hot label
    too, the decoder D + num_classes inputs)."""
    convolutional: bool
    """Its encoder is convolutional: the model.conv_* options apply, and a conditional VAE's
    label enters the encoder as constant planes (an MLP's: appended to the pixels)."""
    description: str


NETWORKS: dict[str, Network] = {}
"""``model.network`` -> :class:`Network`: the built-in families (filled below, once their
modules are defined), :data:`CUSTOM`, and the plug-ins of :func:`register_network`."""

NetworkBuilder = Callable[[ModelConfig, tuple[int, int, int], int], tuple[nn.Module, nn.Module]]
"""``builder(model_config, image_shape, params_per_pixel) -> (encoder, decoder)``."""

BUILDERS: dict[str, NetworkBuilder] = {}
"""The plug-in networks of :func:`register_network`: name -> builder."""


def register_network(name: str, builder: NetworkBuilder) -> None:
    """Make ``model.network: name`` build your encoder and decoder with ``builder`` (in YAML, as
    ``--network name`` and in sweeps); registering a name again replaces its builder.

    ``builder(model_config, image_shape, params_per_pixel) -> (encoder, decoder)`` gets the
    run's :class:`~vaelab.config.ModelConfig` (``latent_dim`` D, ``hidden``, ...), the data's
    ``(C, H, W)`` and the likelihood's parameters per pixel K, and returns two ``nn.Module`` s
    that follow the contract of this module's docstring. The command line sees the name once
    the module calling this is imported: ``vaelab --import mypackage.networks train --network
    name``; each run records that module in ``environment.json``.

    Raises:
        ConfigError: ``name`` is not a word (letters, digits, ``_ - .``), names a built-in
            network, or ``builder`` is not callable.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"register_network: the name must start with a letter and hold letters, digits, _ - . only, "
                          f"got {name!r}")
    if name in NETWORKS and name not in BUILDERS:
        raise ConfigError(f"register_network: {name} is a built-in network; register yours under another name")
    if not callable(builder):
        raise ConfigError(f"register_network: the builder of {name} must be callable "
                          "(model_config, image_shape, params_per_pixel) -> (encoder, decoder), "
                          f"got {type(builder).__name__}")
    BUILDERS[name] = builder
    NETWORKS[name] = Network(_plug_in, False,
                             f"plug-in: {builder.__module__}.{getattr(builder, '__qualname__', type(builder).__name__)}")


def is_plug_in(network: str) -> bool:
    """True for your own networks: :data:`CUSTOM` or a name of :func:`register_network`."""
    return network in (CUSTOM, *BUILDERS)


def plug_in_networks(config: ModelConfig, image_shape: tuple[int, int, int], params_per_pixel: int,
                     networks: tuple[nn.Module, nn.Module] | None = None) -> tuple[nn.Module, nn.Module]:
    """Your encoder and decoder for ``config``: ``networks`` (the modules given from Python),
    else those of the builder registered as ``config.network``; checked by :func:`check_networks`.

    Raises:
        ConfigError: a :data:`CUSTOM` run without its modules (it says how to give them), a
            builder that fails or returns something else than two modules, or modules that
            break the contract.
    """
    if networks is None and config.network not in BUILDERS:  # custom: the modules were given from Python
        raise ConfigError(
            "this run's model.network is custom: it was trained with encoder and decoder modules given from Python, "
            "and its run directory keeps only their weights; give them again from Python (vaelab.load_model, "
            "resume, evaluate and plot_run take encoder= and decoder=), or register a builder with "
            "vaelab.register_network and train with model.network NAME and `vaelab --import MODULE`")
    if networks is None:
        builder = BUILDERS[config.network]
        try:
            networks = builder(config, tuple(image_shape), params_per_pixel)
        except ConfigError:
            raise
        except Exception as exc:  # the plug-in's code: one line naming it
            raise ConfigError(f"network {config.network}: its builder failed ({type(exc).__name__}: {exc})") from None
    if not (isinstance(networks, (tuple, list)) and len(networks) == 2
            and all(isinstance(m, nn.Module) for m in networks)):
        raise ConfigError(f"network {config.network}: the builder must return (encoder, decoder), two nn.Module, "
                          f"got {type(networks).__name__}")
    encoder, decoder = networks
    check_networks(encoder, decoder, image_shape, config.latent_dim, params_per_pixel)
    return encoder, decoder


@torch.no_grad()
def check_networks(encoder: nn.Module, decoder: nn.Module, image_shape: tuple[int, int, int], latent_dim: int,
                   params_per_pixel: int) -> None:
    """Run ``encoder`` and ``decoder`` once on two examples (gray images of 0.5, latents of 0)
    in eval mode, without gradients or random draws, and check what they return against the
    contract (module docstring); their train/eval mode is left as it was.

    Raises:
        ConfigError: a module fails on its input, or returns another type or shape (one line:
            what it got, what the contract asks, e.g. the ``model.latent_dim`` to set).
    """
    c, h, w = image_shape
    expected = (2, params_per_pixel * c, h, w)
    modes = encoder.training, decoder.training
    device = next(encoder.parameters(), torch.empty(0)).device
    encoder.eval()
    decoder.eval()
    try:
        x = torch.full((2, c, h, w), 0.5, device=device)
        try:
            out = encoder(x)
        except Exception as exc:
            raise ConfigError(f"your encoder failed on x of shape {tuple(x.shape)} ({type(exc).__name__}: {exc}); it "
                              "takes x: (B, C, H, W) float in [0, 1]") from None
        if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(torch.is_tensor(t) for t in out)):
            raise ConfigError(f"your encoder returned {type(out).__name__}; it must return (mean, log_var), two "
                              "tensors (an EncoderOutput or a tuple)")
        shapes = [tuple(t.shape) for t in out]
        if any(s[:1] != (2,) or len(s) != 2 for s in shapes) or shapes[0] != shapes[1]:
            raise ConfigError(f"your encoder returned mean and log_var of shapes {shapes[0]} and {shapes[1]} for 2 "
                              "examples; each must be (B, D)")
        if shapes[0][1] != latent_dim:
            raise ConfigError(f"your encoder returns {shapes[0][1]} latent dimensions but model.latent_dim is "
                              f"{latent_dim}; set {option('model.latent_dim', shapes[0][1])}")
        z = torch.zeros(2, latent_dim, device=next(decoder.parameters(), torch.empty(0)).device)
        try:
            y = decoder(z)
        except Exception as exc:
            raise ConfigError(f"your decoder failed on z of shape {tuple(z.shape)} ({type(exc).__name__}: {exc}); it "
                              "takes z: (N, D) with D = model.latent_dim") from None
        if not torch.is_tensor(y) or tuple(y.shape) != expected:
            got = tuple(y.shape) if torch.is_tensor(y) else type(y).__name__
            raise ConfigError(f"your decoder returned {got} for z of shape (2, {latent_dim}); it must return "
                              f"(N, K*C, H, W) = {expected}: K = {params_per_pixel} parameter(s) per pixel of the "
                              "likelihood, (C, H, W) the data's shape (vaelab.decoder_channels gives K*C)")
    finally:
        encoder.train(modes[0])
        decoder.train(modes[1])


def decoder_channels(config, image_shape: tuple[int, int, int]) -> int:
    """K*C: the channels your decoder returns for data of shape ``(C, H, W)`` under ``config``
    (a :class:`~vaelab.config.Config`, its ``model`` section or a dict of the config), K the
    likelihood's parameters per pixel (1 for Bernoulli or a fixed scale, 2 when
    ``learn_scale: decoder`` makes the decoder give a scale per pixel).

    Raises:
        ConfigError: an invalid config.
    """
    from ..config import Config
    from .likelihoods import LIKELIHOODS

    if isinstance(config, dict):
        config = Config.from_dict(config)
    model = config.model if isinstance(config, Config) else config
    likelihood = LIKELIHOODS[model.likelihood](model, tuple(image_shape))
    return likelihood.params_per_pixel * image_shape[0]


def conv_spec(config: ModelConfig, image_shape: tuple[int, int, int]) -> ConvSpec:
    """The conv stack ``config`` asks for, checked against ``image_shape``.

    Raises:
        ConfigError: the downsampling would shrink the image below one pixel.
    """
    if config.network in CONV_PRESETS:
        spec = CONV_PRESETS[config.network]
        spec = ConvSpec(spec.channels, spec.kernels, spec.downsample, config.conv_upsample,
                        spec.batch_norm or config.batch_norm, spec.fc_hidden)
    else:
        channels = tuple(config.conv_channels or (32, 64))
        kernels = tuple(config.conv_kernels or (3,))
        kernels = kernels * len(channels) if len(kernels) == 1 else kernels
        spec = ConvSpec(channels, kernels, config.conv_downsample, config.conv_upsample, config.batch_norm)
    sizes = spec.sizes(*image_shape[1:])
    if min(min(s) for s in sizes) < 1:
        c, h, w = image_shape
        raise ConfigError(
            f"model.network={config.network}: {len(spec.channels)} downsampling layers shrink "
            f"{h}x{w} inputs to {sizes[-1][0]}x{sizes[-1][1]} pixels (resolutions "
            f"{' -> '.join(f'{a}x{b}' for a, b in sizes)}); use fewer layers or an MLP"
        )
    return spec


class ConvEncoder(nn.Module):
    """Convolutions (each: conv, [batch norm], activation, [2x2 max-pool]), flatten, optional fully
    connected ``hidden`` layers, then the mean and log-variance heads."""

    def __init__(self, image_shape: tuple[int, int, int], spec: ConvSpec, hidden: list[int],
                 latent_dim: int, activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        n_in = image_shape[0]
        for ch, k in zip(spec.channels, spec.kernels):
            if spec.downsample == "pool":
                layers.append(nn.Conv2d(n_in, ch, k, padding=k // 2))
            else:
                layers.append(nn.Conv2d(n_in, ch, k, stride=2, padding=(k - 1) // 2))
            if spec.batch_norm:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(ACTIVATIONS[activation]())
            if spec.downsample == "pool":
                layers.append(nn.MaxPool2d(2))
            n_in = ch
        h, w = spec.sizes(*image_shape[1:])[-1]
        n_flat = n_in * h * w
        fc = hidden if spec.fc_hidden else []
        self.convs = nn.Sequential(*layers)
        self.fc = mlp([n_flat, *fc], activation, spec.batch_norm, dropout)
        self.heads = _Heads(fc[-1] if fc else n_flat, latent_dim)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        return self.heads(self.fc(self.convs(x).flatten(1)))


class _Upsample(nn.Module):
    """Double the resolution to exactly ``size``: a stride-2 transposed convolution cropped to
    ``size``, or nearest-neighbour upsampling to ``size`` followed by a 'same' convolution."""

    def __init__(self, n_in: int, n_out: int, kernel: int, size: tuple[int, int], mode: str):
        super().__init__()
        self.size, self.mode = size, mode
        if mode == "transpose":
            self.conv = nn.ConvTranspose2d(n_in, n_out, max(kernel, 3), stride=2)
        else:
            self.conv = nn.Conv2d(n_in, n_out, kernel, padding=kernel // 2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.mode == "transpose":
            h = self.conv(h)  # (N, C, 2h + k - 2, ...) >= size, as k >= 3
            top = (h.shape[-2] - self.size[0]) // 2
            left = (h.shape[-1] - self.size[1]) // 2
            return h[..., top:top + self.size[0], left:left + self.size[1]]
        h = nn.functional.interpolate(h, size=self.size, mode="nearest")
        h = self.conv(h)
        return h[..., : self.size[0], : self.size[1]]  # even kernels make 'same' one pixel larger


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder`: fully connected layers from z to the last feature map,
    then one upsampling block per encoder layer back to ``(K*C, H, W)``; no output
    non-linearity."""

    def __init__(self, image_shape: tuple[int, int, int], spec: ConvSpec, hidden: list[int],
                 latent_dim: int, activation: str = "relu", params_per_pixel: int = 1, dropout: float = 0.0):
        super().__init__()
        sizes = spec.sizes(*image_shape[1:])
        fc = hidden if spec.fc_hidden else []
        self.map_shape = (spec.channels[-1], *sizes[-1])
        n_map = spec.channels[-1] * sizes[-1][0] * sizes[-1][1]
        self.fc = nn.Sequential(mlp([latent_dim, *fc], activation, spec.batch_norm, dropout),
                                nn.Linear(fc[-1] if fc else latent_dim, n_map), ACTIVATIONS[activation]())
        outs = [params_per_pixel * image_shape[0], *spec.channels[:-1]]
        blocks: list[nn.Module] = []
        for i in reversed(range(len(spec.channels))):
            blocks.append(_Upsample(spec.channels[i], outs[i], spec.kernels[i], sizes[i], spec.upsample))
            if i > 0:
                if spec.batch_norm:
                    blocks.append(nn.BatchNorm2d(outs[i]))
                blocks.append(ACTIVATIONS[activation]())
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        h = self.fc(z.reshape(-1, z.shape[-1])).reshape(-1, *self.map_shape)
        out = self.blocks(h)
        return out.reshape(*lead, *out.shape[1:])


_KAIMING_NONLINEARITY = {"relu": "relu", "leaky_relu": "leaky_relu", "elu": "relu", "softplus": "relu",
                         "tanh": "tanh"}

INITIALISERS = {
    # scheme -> fn(weight, activation); "default" keeps PyTorch's own initialisation
    "default": None,
    "xavier_uniform": lambda weight, activation: nn.init.xavier_uniform_(weight),
    "xavier_normal": lambda weight, activation: nn.init.xavier_normal_(weight),
    "kaiming_normal": lambda weight, activation: nn.init.kaiming_normal_(
        weight, nonlinearity=_KAIMING_NONLINEARITY[activation]),
    "kaiming_uniform": lambda weight, activation: nn.init.kaiming_uniform_(
        weight, nonlinearity=_KAIMING_NONLINEARITY[activation]),
}


def initialise(module: nn.Module, scheme: str, activation: str) -> None:
    """Re-initialise every linear and convolution weight by ``scheme`` (biases to zero):
    Xavier/Glorot (Glorot & Bengio 2010) or Kaiming/He (He et al. 2015, fan-in mode, gain for
    ``activation``). ``default`` keeps PyTorch's own initialisation."""
    if scheme not in INITIALISERS:
        raise ValueError(f"unknown initialisation {scheme!r}")
    init = INITIALISERS[scheme]
    if init is None:
        return
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            init(layer.weight, activation)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _decoder_hidden(config: ModelConfig) -> list[int]:
    return config.decoder_hidden if config.decoder_hidden is not None else config.hidden[::-1]


def _mlp(config: ModelConfig, image_shape: tuple[int, int, int], k: int, n: int) -> tuple[nn.Module, nn.Module]:
    """MLPs; a conditional VAE's one-hot label (``n`` classes) appended to the pixels and to z."""
    c, h, w = image_shape
    encoder = MLPEncoder((1, 1, c * h * w + n) if n else image_shape, config.hidden, config.latent_dim,
                         config.activation, config.batch_norm, config.dropout)
    decoder = MLPDecoder(image_shape, _decoder_hidden(config), config.latent_dim + n, config.activation, k,
                         config.batch_norm, config.dropout)
    return encoder, decoder


def _conv(config: ModelConfig, image_shape: tuple[int, int, int], k: int, n: int) -> tuple[nn.Module, nn.Module]:
    """Convolutions of :func:`conv_spec` (a preset, or model.conv_*); the decoder mirrors them,
    or is an MLP with ``model.decoder_network``; a conditional VAE's label as ``n`` planes."""
    c, h, w = image_shape
    spec = conv_spec(config, image_shape)
    encoder = ConvEncoder((c + n, h, w), spec, config.hidden, config.latent_dim, config.activation, config.dropout)
    if config.decoder_network is not None:  # its one choice, mlp: a convolutional encoder with an MLP decoder
        decoder = MLPDecoder(image_shape, _decoder_hidden(config), config.latent_dim + n, config.activation, k,
                             config.batch_norm, config.dropout)
    else:
        decoder = ConvDecoder(image_shape, spec, _decoder_hidden(config), config.latent_dim + n, config.activation,
                              k, config.dropout)
    return encoder, decoder


def _plug_in(config: ModelConfig, image_shape: tuple[int, int, int], k: int, n: int) -> tuple[nn.Module, nn.Module]:
    """Your own modules: a registered builder's (config_problems refuses a conditional VAE)."""
    return plug_in_networks(config, image_shape, k)


NETWORKS.update({
    "mlp": Network(_mlp, False, "MLPEncoder / MLPDecoder"),
    "conv": Network(_conv, True, "ConvEncoder / ConvDecoder of model.conv_channels, conv_kernels, conv_downsample"),
    **{name: Network(_conv, True, f"ConvEncoder / ConvDecoder of CONV_PRESETS[{name!r}]") for name in CONV_PRESETS},
    CUSTOM: Network(_plug_in, False, "your encoder and decoder modules, given to vaelab.train(encoder=..., "
                                     "decoder=...)"),
})


def config_problems(config) -> list[str]:
    """The network's checks of a whole :class:`~vaelab.config.Config` (see :mod:`vaelab.registry`)."""
    m, problems = config.model, []
    if is_plug_in(m.network) and m.conditional:
        problems.append(f"model.conditional appends the label to the built-in networks' inputs; network {m.network} "
                        "(your own modules) cannot take it: drop model.conditional")
    network = NETWORKS.get(m.network)  # None: an unknown name, which the choices already report
    if network is not None and not network.convolutional and (m.conv_channels or m.conv_kernels):
        problems.append("model.conv_channels/conv_kernels need network: conv")
    if m.conv_kernels and m.conv_channels and len(m.conv_kernels) not in (1, len(m.conv_channels)):
        problems.append("model.conv_kernels needs one value or one per entry of model.conv_channels")
    from .hierarchical import config_problems as hierarchical_problems  # it builds on this module's MLPs

    return problems + hierarchical_problems(config)
