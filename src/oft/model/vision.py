"""Vision transformers with timm's parameter names, optional FiLM, and OpenVLA's (fused) vision backbone.

timm and torchvision are not dependencies (torchvision does not import with the CPU torch wheel used here),
so the two ViTs OpenVLA uses are re-implemented with *exactly* timm's parameter names, so that OpenVLA
checkpoints load without renaming:

* ``vit_large_patch14_reg4_dinov2.lvd142m``: class token + 4 register tokens, positional embedding on the
  patch tokens only (``no_embed_class``), LayerScale (OpenVLA renames timm's ``gamma`` to ``scale_factor``
  because HF ``from_pretrained`` mangles parameters called ``gamma``).
* ``vit_so400m_patch14_siglip_224``: no prefix tokens, no LayerScale, a MAP attention-pool head
  (``attn_pool.*``) that is in the weights but never used by OpenVLA.

OpenVLA reads features from the second-to-last block with the prefix tokens dropped and without the final
norm, so the last block is never computed here (its weights are still held so checkpoints round-trip).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from oft.spec import unknown_name_message

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
# patch embeddings: timm's linear projection (every pretrained ViT), or ConvStem (from-scratch models)
STEMS = ("patch", "conv")


@dataclass(frozen=True)
class ViTConfig:
    """Sizes of one ViT. ``mean``/``std`` are the pixel normalization it was pre-trained with."""

    img_size: int = 224
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    class_token: bool = True
    num_reg_tokens: int = 0
    no_embed_class: bool = False
    layer_scale: bool = False
    attn_pool: bool = False
    ln_eps: float = 1e-6
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    stem: str = "patch"  # "patch" (timm: one linear projection per patch) or "conv" (:class:`ConvStem`)
    keypoints: int = 0  # > 0: a :class:`SpatialSoftmax` token of this many keypoints after the patches

    def __post_init__(self) -> None:
        if self.stem not in STEMS:
            raise ValueError(f"ViT stem must be one of {list(STEMS)}, got {self.stem!r}")
        if self.stem == "conv":
            ConvStem.widths(self.patch_size, self.embed_dim)  # raises on a patch size it cannot make
        if self.keypoints < 0:
            raise ValueError(f"ViT keypoints must be >= 0 (0: no keypoint token), got {self.keypoints}")

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + self.num_reg_tokens

    @property
    def num_tokens(self) -> int:
        """Tokens the ViT returns per image: its patches, and the keypoint token if it has one."""
        return self.num_patches + int(self.keypoints > 0)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ViTConfig:
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


# timm model ids OpenVLA uses -> their architecture (timm 0.9.x definitions, img_size overridden to 224)
TIMM_VITS: dict[str, ViTConfig] = {
    "vit_large_patch14_reg4_dinov2.lvd142m": ViTConfig(
        embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0, class_token=True, num_reg_tokens=4,
        no_embed_class=True, layer_scale=True, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    ),
    "vit_so400m_patch14_siglip_224": ViTConfig(
        embed_dim=1152, depth=27, num_heads=16, mlp_ratio=3.7362, class_token=False, num_reg_tokens=0,
        attn_pool=True, mean=HALF, std=HALF,
    ),
}  # fmt: skip


def timm_vit_config(model_id: str, img_size: int = 224, overrides: dict | None = None) -> ViTConfig:
    """The config of a timm id OpenVLA uses, with optional ``timm_override_kwargs`` (embed_dim, depth...)."""
    if model_id not in TIMM_VITS:
        raise KeyError(unknown_name_message("timm vision model", model_id, TIMM_VITS))
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(ViTConfig)}
    bad = set(overrides) - known
    if bad:
        raise ValueError(f"unsupported timm override kwargs {sorted(bad)}; supported: {sorted(known)}")
    return dataclasses.replace(TIMM_VITS[model_id], img_size=img_size, **overrides)


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        if cfg.stem == "conv":
            self.stem = ConvStem(cfg.patch_size, cfg.embed_dim)
        else:
            self.proj = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x) if hasattr(self, "stem") else self.proj(x)
        return x.flatten(2).transpose(1, 2)  # (B, N, C)


class ConvStem(nn.Module):
    """A convolutional patch embedding: log2(patch) stride-2 3x3 convs (GroupNorm, ReLU), then a 1x1 conv.

    (B, 3, H, W) -> (B, embed_dim, H / patch, W / patch): the same token grid as the linear patch projection.
    From Xiao et al. 2021, "Early Convolutions Help Transformers See Better" (their stem uses BatchNorm;
    GroupNorm here, so an action never depends on the other samples of a batch). Channel widths double up to
    ``embed_dim`` (patch 16, width 128: 16, 32, 64, 128).

    Why it exists: a linear patch projection followed by attention does not learn to find a target a few
    pixels wide from scratch. Regressing the ALOHA cube's position (3x3 pixels at 128 px) from 50 layouts,
    a ViT with an attention or mean-pool readout stays at the mean predictor after 800 steps (L1 0.82
    standard deviations on unseen layouts); with this stem it reaches 0.47. In the ALOHA policy, where few
    training samples depend on the cube's position, the stem alone did not raise success
    (docs/results/aloha.md).
    """

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in self.widths(patch_size, embed_dim):
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(min(8, c), c), nn.ReLU()]
            c_in = c
        layers.append(nn.Conv2d(c_in, embed_dim, 1))
        self.layers = nn.Sequential(*layers)

    @staticmethod
    def widths(patch_size: int, embed_dim: int) -> list[int]:
        """Channels of the stride-2 convs; ValueError unless patch_size is a power of two >= 2."""
        n = int(patch_size).bit_length() - 1
        if patch_size < 2 or 2**n != patch_size:
            raise ValueError(f"a conv stem needs a power-of-two patch size >= 2, got {patch_size}")
        return [max(embed_dim >> (n - 1 - i), 8) for i in range(n)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SpatialSoftmax(nn.Module):
    """Keypoints read from the patch grid: (B, P, C) patch features -> (B, C), one more token per image.

    Each of ``keypoints`` linear maps scores every patch; a softmax over the P patches turns the scores into
    a distribution whose expected patch-centre coordinates (x, y in [-1, 1], row-major grid) is the keypoint.
    The 2 * keypoints coordinates are projected to one token of width C. An expectation over the grid varies
    continuously with the scores, so a keypoint can lie between patch centres. The readout of Levine, Finn
    et al. 2016 ("End-to-End Training of Deep Visuomotor Policies") that robomimic (``SpatialSoftmax``, 32
    keypoints) and Diffusion Policy put over conv features; here over the ViT's patch features, for targets
    a pixel or two wide whose position decides the action (MetaWorld's goals and pucks at 64 px).
    """

    def __init__(self, grid: int, dim: int, keypoints: int) -> None:
        super().__init__()
        self.grid = grid
        self.score = nn.Linear(dim, keypoints)
        self.proj = nn.Linear(2 * keypoints, dim)

    def coords(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(P, 2) patch-centre (x, y) in [-1, 1], row-major; made here, not held (no checkpoint entry)."""
        c = torch.linspace(-1.0, 1.0, self.grid, device=device, dtype=dtype)
        ys, xs = torch.meshgrid(c, c, indexing="ij")
        return torch.stack([xs.flatten(), ys.flatten()], -1)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        weights = self.score(patches).softmax(dim=1)  # (B, P, keypoints): a distribution over patches each
        xy = torch.einsum("bpk,pc->bkc", weights, self.coords(weights.device, weights.dtype))
        return self.proj(xy.flatten(1))  # (B, keypoints, 2) -> (B, C)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, heads, N, hd)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.scale_factor = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_factor


class Block(nn.Module):
    """timm's pre-norm ViT block, with optional FiLM between attention and MLP.

    FiLM (``scale``/``shift``, the reference's names) maps the mean language embedding to per-channel
    (γ, β) applied to every patch as (1 + γ)·x + β: the same modulation for all patches, as FiLM is
    spatially global in conv nets. 1 + γ (not γ) and zero-initialized maps make the block start as the
    identity, so fine-tuning begins from the pretrained representation.
    """

    def __init__(self, cfg: ViTConfig, film_dim: int | None = None) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.ln_eps)
        self.attn = Attention(dim, cfg.num_heads)
        self.ls1 = LayerScale(dim) if cfg.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.ln_eps)
        self.mlp = Mlp(dim, cfg.mlp_hidden)
        self.ls2 = LayerScale(dim) if cfg.layer_scale else nn.Identity()
        if film_dim is not None:
            self.scale = nn.Linear(film_dim, dim)
            self.shift = nn.Linear(film_dim, dim)
            self.reset_film()

    def reset_film(self) -> None:
        """Zero the FiLM maps: γ = β = 0, so the block is exactly the un-modulated block."""
        if hasattr(self, "scale"):
            for lin in (self.scale, self.shift):
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, lang: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        if hasattr(self, "scale"):
            if lang is None:
                raise ValueError("this ViT uses FiLM: a (B, llm_dim) language embedding is required")
            gamma, beta = self.scale(lang).unsqueeze(1), self.shift(lang).unsqueeze(1)  # (B, 1, C)
            x = x * (1 + gamma) + beta
        return x + self.ls2(self.mlp(self.norm2(x)))


class AttentionPoolLatent(nn.Module):
    """SigLIP's MAP head: held only so checkpoint keys match (OpenVLA never uses it)."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.latent = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=cfg.ln_eps)
        self.mlp = Mlp(dim, cfg.mlp_hidden)


class VisionTransformer(nn.Module):
    """A timm-compatible ViT returning the patch features of the second-to-last block."""

    def __init__(self, cfg: ViTConfig, film_dim: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        if cfg.class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if cfg.num_reg_tokens:
            self.reg_token = nn.Parameter(torch.zeros(1, cfg.num_reg_tokens, dim))
        pos_len = cfg.num_patches + (0 if cfg.no_embed_class else cfg.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.randn(1, pos_len, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(cfg, film_dim) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(dim, eps=cfg.ln_eps)  # unused by OpenVLA, kept for checkpoint keys
        if cfg.attn_pool:
            self.attn_pool = AttentionPoolLatent(cfg)
        if cfg.keypoints:
            self.spatial_softmax = SpatialSoftmax(cfg.img_size // cfg.patch_size, dim, cfg.keypoints)
        self.apply(_init_weights)
        for block in self.blocks:
            block.reset_film()

    def _prefix(self, x: torch.Tensor) -> list[torch.Tensor]:
        B = x.shape[0]
        out = []
        if self.cfg.class_token:
            out.append(self.cls_token.expand(B, -1, -1))
        if self.cfg.num_reg_tokens:
            out.append(self.reg_token.expand(B, -1, -1))
        return out

    def forward(self, pixels: torch.Tensor, lang: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) normalized pixels [+ (B, llm_dim) mean language embedding] -> (B, T, C): the patch
        features, then the keypoint token if ``cfg.keypoints`` (T = ``cfg.num_tokens``)."""
        x = self.patch_embed(pixels)
        if self.cfg.no_embed_class:
            x = torch.cat([*self._prefix(x), x + self.pos_embed], dim=1)
        else:
            x = torch.cat([*self._prefix(x), x], dim=1) + self.pos_embed
        for block in list(self.blocks)[: len(self.blocks) - 1]:  # the last block's output is never read
            x = block(x, lang)
        x = x[:, self.cfg.num_prefix_tokens :]
        if self.cfg.keypoints:
            x = torch.cat([x, self.spatial_softmax(x).unsqueeze(1)], dim=1)
        return x


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class VisionBackbone(nn.Module):
    """OpenVLA's ``vision_backbone``: one ViT (``featurizer``) or two fused on the channel axis.

    Pixels arrive as (B, N_images, 3 * n_vits, H, W): per image, 3 channels per ViT, each normalized with
    that ViT's mean/std (OpenVLA stacks them on channels). Fused features are concatenated along the hidden
    dimension; several images are concatenated along the sequence.
    """

    def __init__(self, vits: list[ViTConfig], film_dim: int | None = None) -> None:
        super().__init__()
        if len(vits) not in (1, 2):
            raise ValueError(f"a vision backbone has 1 or 2 ViTs, got {len(vits)}")
        if len({(v.img_size, v.patch_size, v.num_tokens) for v in vits}) != 1:
            raise ValueError(f"fused ViTs must share image size, patch size and keypoint token, got {vits}")
        self.configs = list(vits)
        self.featurizer = VisionTransformer(vits[0], film_dim)
        if len(vits) == 2:
            self.fused_featurizer = VisionTransformer(vits[1], film_dim)

    @property
    def embed_dim(self) -> int:
        return sum(v.embed_dim for v in self.configs)

    @property
    def num_patches(self) -> int:
        return self.configs[0].num_patches

    @property
    def num_tokens(self) -> int:
        """Tokens per image: the patches, and the keypoint token of a ViT with keypoints."""
        return self.configs[0].num_tokens

    @property
    def image_size(self) -> int:
        return self.configs[0].img_size

    def forward(self, pixels: torch.Tensor, lang: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, 3*n_vits, H, W) -> (B, N * num_tokens, embed_dim)."""
        B, N = pixels.shape[:2]
        flat = pixels.flatten(0, 1)  # (B*N, C, H, W)
        lang_rep = None if lang is None else lang.repeat_interleave(N, dim=0)  # (B*N, llm_dim)
        feats = [self.featurizer(flat[:, :3], lang_rep)]
        if len(self.configs) == 2:
            feats.append(self.fused_featurizer(flat[:, 3:6], lang_rep))
        x = torch.cat(feats, dim=-1)  # (B*N, P, C)
        return x.reshape(B, N * x.shape[1], x.shape[2])
