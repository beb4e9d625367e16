"""Scene-linear (what Blender renders) to display space (what VGG sees) and back.

**What VGG sees.** The artist judges a render through the scene's view transform: working
space -> (exposure) -> look -> view (Standard, Filmic, AgX, ...) -> display (sRGB) ->
(gamma). `View` is that chain, built with OpenColorIO from the scene's own config (Blender's,
a studio's through $OCIO or --ocio-config), so the network paints the picture the artist
sees, clipped to [0, 1]. Without OpenColorIO or a config, the chain is the sRGB curve on
Linear Rec.709 (the documented default; the engine says so once).

**The way back.** A view squeezes highlights into a narrow display range (AgX: linear 4.0
-> 0.914, 16 -> ~1.0), so a plain inverse of a stylized display image would blow highlights
up and move saturated colours the view had compressed. Measured on Blender 5.0's config
(bench/colour_roundtrip.py): AgX's inverse gives near-neutral colours back within 0.3%
(4.0 -> 0.914 -> 4.011), but on saturated colours with no channel above 1 it misses the
small channels by up to 8x their value (15-19x for Rec.2020/ACEScg colours outside the
display's gamut, which the display clips); its inverse maps display 0.99 to 14.5 and 1.0 to
16.5 (a 1% paint stroke is a 2-stop jump). So the
stylization comes back as a *change*: with `inverse` the view's inverse,

    out_linear = in_linear + inverse(display_stylized) - inverse(clip(display_in, 0, 1))

kept as `excess = in_linear - inverse(clip(display_in))`, the linear amount the display image
does not carry (highlights above the display's white, colours outside its gamut, the view's
round-trip error). Where the network changes nothing the output *is* the input, bit for bit
up to float rounding: values above 1, the working space's primaries (Rec.2020, ACEScg) and
everything the view cannot show survive. Where it paints, the change is the view's own
inverse of the painted change, so the artist sees the painting through the same view,
except that a stroke never brightens a pixel beyond the view's diffuse white or the render's
own value (`to_linear`: no invented highlights). The cost, measured on a real AgX
stylization (bench/colour_roundtrip.py --ways-back): where the view shows a pixel, the
artist sees the painting within 0.008 (display units, mean); where the view saturates it
(a highlight far above the view's white) the highlight is kept and the stroke barely shows
there (a plain inverse would show it, but flattened the plate's 50.0 highlights to 4.2).
The ratio form (in * inverse(styl) / inverse(in)) was not taken: it divides by ~0 in blacks.
With the sRGB curve this is exactly the older rule "keep what clipping cut off".

**Alpha** is never stylized: colour is un-premultiplied before the view, premultiplied by
the same alpha after, and alpha is copied bit for bit. Pixels with (almost) no alpha have no
straight colour to paint: their premultiplied colour (usually 0; emission otherwise) is kept
as their excess and passed through unchanged, so nothing painted leaks into transparency.

**Colour preservation** (Gatys et al. 2016, "Preserving Color in Neural Artistic Style
Transfer", luminance-only transfer): `keep_chroma` keeps the stylized image's luma Y and the
render's chroma I, Q, in YIQ of the display image (the space the paper uses).

Arrays are numpy float32 with channels last: rgba (H, W, 4), rgb (H, W, 3).
"""

from __future__ import annotations

import glob
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

ALPHA_EPSILON = 1e-6  # below this alpha a pixel is treated as empty (no un-premultiply)
SRGB_CURVE = "sRGB curve"  # View.source when no OpenColorIO config is used
# Interop ids (OCIO 2.5 / OpenEXR 3.4 `colorInteropID`) of the working spaces Blender 5.0
# offers, for the fallback (a config gives its own) and the chromaticities header.
REC709_ID = "lin_rec709_scene"
# CIE xy of red, green, blue primaries and white, per interop id (for EXR `chromaticities`).
CHROMATICITIES: dict[str, tuple[float, ...]] = {
    "lin_rec709_scene": (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290),
    "lin_rec2020_scene": (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290),
    "lin_ap1_scene": (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767),
    "lin_p3d65_scene": (0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.3127, 0.3290),
}


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer curve (IEC 61966-2-1): linear [0, 1] -> display [0, 1].

    Above 1 it continues the power law (1.0 -> 1.0, 4.0 -> 1.83), as Blender's Standard view.
    """
    linear = np.asarray(linear, dtype=np.float32)
    return np.where(linear <= 0.0031308, 12.92 * linear,
                    1.055 * np.power(np.maximum(linear, 0.0031308), 1 / 2.4) - 0.055).astype(np.float32)


def srgb_decode(display: np.ndarray) -> np.ndarray:
    """Inverse of `srgb_encode`: display [0, 1] -> linear [0, 1]."""
    display = np.asarray(display, dtype=np.float32)
    return np.where(display <= 0.04045, display / 12.92,
                    np.power((np.maximum(display, 0.04045) + 0.055) / 1.055, 2.4)).astype(np.float32)


@dataclass
class View:
    """Working space -> display as the artist sees it, and back. Both on straight RGB.

    forward: (..., 3) linear in `working_space` -> display (not clipped; Standard goes
    above 1). inverse: display [0, 1] -> linear. `source` is the config's path or
    SRGB_CURVE; `interop_id` names the working space in output headers.
    """

    forward: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]
    working_space: str = "Linear Rec.709"
    interop_id: str = REC709_ID
    source: str = SRGB_CURVE
    description: str = "sRGB curve on Linear Rec.709"
    details: dict[str, Any] = field(default_factory=dict)


def srgb_view(exposure: float = 0.0, gamma: float = 1.0) -> View:
    """The fallback: Linear Rec.709 -> exposure (stops) -> sRGB curve -> gamma."""
    scale = np.float32(2.0 ** exposure)

    def forward(rgb: np.ndarray) -> np.ndarray:
        display = srgb_encode(np.asarray(rgb, np.float32) * scale)
        return display if gamma == 1 else np.power(np.maximum(display, 0), 1 / gamma).astype(np.float32)

    def inverse(display: np.ndarray) -> np.ndarray:
        display = np.asarray(display, np.float32)
        if gamma != 1:
            display = np.power(np.maximum(display, 0), gamma).astype(np.float32)
        return (srgb_decode(display) / scale).astype(np.float32)

    description = "sRGB curve on Linear Rec.709"
    if exposure or gamma != 1:
        description += f" (exposure {exposure:g}, gamma {gamma:g})"
    return View(forward, inverse, description=description)


def installed_blender_config() -> str | None:
    """Blender's own OCIO config inside an installed `bpy` package, if there is one.

    Found without importing bpy (the engine never does): bpy/<version>/datafiles/
    colormanagement/config.ocio next to the package.
    """
    try:
        spec = importlib.util.find_spec("bpy")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(glob.glob(os.path.join(folder, "*", "datafiles", "colormanagement",
                                              "config.ocio")))
        if found:
            return found[-1]  # the newest version folder
    return None


def find_config(explicit: str = "") -> tuple[str | None, str]:
    """Which OCIO config to use: (path or None, why) -- --ocio-config, $OCIO, Blender's."""
    if explicit:
        return explicit, "--ocio-config / job"
    if os.environ.get("OCIO"):
        return os.environ["OCIO"], "$OCIO"
    blender = installed_blender_config()
    if blender:
        return blender, "the installed bpy package"
    return None, "none found"


def _apply(processor: Any) -> Callable[[np.ndarray], np.ndarray]:
    """An OCIO CPU processor as a pure function on (..., 3) float32 arrays."""
    def run(rgb: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(rgb, dtype=np.float32).copy()
        processor.applyRGB(out.reshape(-1, 3))
        return out
    return run


def ocio_view(config_path: str, working_space: str = "Linear Rec.709", display: str = "sRGB",
              view: str = "Standard", look: str = "None", exposure: float = 0.0,
              gamma: float = 1.0) -> View:
    """The scene's view chain with OpenColorIO, as Blender builds it for its viewer.

    exposure in stops (a 2^exposure scale in the working space, before the view); look
    an OCIO look name ("None" or "" for none); gamma a display-space power 1/gamma after the
    view. Raises ValueError naming the valid choices for an unknown space, display, view or
    look; OSError/ImportError when the config or the package cannot be loaded.
    """
    import PyOpenColorIO as ocio  # optional: without it the engine uses srgb_view()

    try:
        config = ocio.Config.CreateFromFile(config_path)
    except Exception as exc:
        raise OSError(f"{config_path}: cannot be loaded as an OpenColorIO config ({exc})") from exc
    spaces = list(config.getColorSpaceNames())
    space = config.getColorSpace(working_space)
    if space is None:
        raise ValueError(f"working space {working_space!r} is not in {config_path}: choose one of "
                         f"{', '.join(spaces)}")
    displays = list(config.getDisplays())
    if display not in displays:
        raise ValueError(f"display {display!r} is not in {config_path}: choose one of "
                         f"{', '.join(displays)}")
    views = list(config.getViews(display))
    if view not in views:
        raise ValueError(f"view {view!r} is not offered for display {display!r}: choose one of "
                         f"{', '.join(views)}")
    looks = [lk.getName() for lk in config.getLooks()]
    if look not in ("", "None") and look not in looks:
        raise ValueError(f"look {look!r} is not in {config_path}: choose None or one of "
                         f"{', '.join(looks)}")
    pipeline = ocio.LegacyViewingPipeline()
    pipeline.setDisplayViewTransform(ocio.DisplayViewTransform(src=working_space, display=display,
                                                               view=view))
    if exposure:
        pipeline.setLinearCC(ocio.ExposureContrastTransform(
            exposure=exposure, style=ocio.EXPOSURE_CONTRAST_LINEAR))
    if look not in ("", "None"):
        pipeline.setLooksOverride(look)
        pipeline.setLooksOverrideEnabled(True)
    if gamma != 1:
        pipeline.setDisplayCC(ocio.ExponentTransform([1 / gamma] * 3 + [1.0]))
    forward = pipeline.getProcessor(config)
    inverse = config.getProcessor(forward.createGroupTransform(), ocio.TRANSFORM_DIR_INVERSE)
    interop = interop_id(space)
    description = f"{working_space} -> {view} on {display}"
    if look not in ("", "None"):
        description += f", look {look}"
    if exposure or gamma != 1:
        description += f", exposure {exposure:g}, gamma {gamma:g}"
    return View(_apply(forward.getDefaultCPUProcessor()), _apply(inverse.getDefaultCPUProcessor()),
                working_space=working_space, interop_id=interop, source=config_path,
                description=description)


def interop_id(space: Any) -> str:
    """The interop id of an OCIO colour space ("lin_rec2020_scene"), or "".

    OCIO 2.5 configs carry it as `interop_id`; Blender 5.0's (a 2.4 config) lists it among
    the aliases, so a known one there counts too.
    """
    found = getattr(space, "getInteropID", lambda: "")() or ""
    if found:
        return str(found)
    aliases = list(space.getAliases())
    known = [a for a in aliases if a in CHROMATICITIES]
    return known[0] if known else ""


def make_view(working_space: str = "Linear Rec.709", display: str = "sRGB", view: str = "Standard",
              look: str = "None", exposure: float = 0.0, gamma: float = 1.0, ocio_config: str = "",
              warn: Callable[[str], None] = print) -> View:
    """The run's View: OCIO with the found config, else the sRGB curve (said once via `warn`).

    An explicitly given (or $OCIO) config that does not load, or an unknown name in a
    config, raises ValueError with the fix: using another colour pipeline would give the
    wrong picture. Without the OpenColorIO package the sRGB curve is used (said once).
    """
    if not (np.isfinite(exposure) and -32 <= exposure <= 32):
        raise ValueError(f"exposure {exposure} is not a number of stops between -32 and 32")
    if not (np.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma {gamma} must be a positive number (1 = no change)")
    path, why = find_config(ocio_config)
    if path is not None:
        try:
            return ocio_view(path, working_space, display, view, look, exposure, gamma)
        except ImportError:
            # Even with a config named (the add-on always sends Blender's): an engine Python
            # without the package still runs, with the documented default.
            missing = ("the OpenColorIO package is not installed in this Python (pip install "
                       "opencolorio==2.6.0)")
        except OSError as exc:
            if ocio_config or why == "$OCIO":
                raise ValueError(f"{exc}: fix the path ({why}) or leave it out.") from exc
            missing = str(exc)
    else:
        missing = "no OpenColorIO config was found (give --ocio-config or set $OCIO)"
    asked = (working_space, display, view, look or "None")
    ignored = "" if asked == ("Linear Rec.709", "sRGB", "Standard", "None") else (
        f"; the asked {working_space} / {view} on {display} / look {look or 'None'} is "
        "replaced by it (the output still keeps the input's values where nothing was painted)")
    warn(f"colour: {missing}; using the sRGB curve on Linear Rec.709{ignored}.")
    return srgb_view(exposure, gamma)


DEFAULT_VIEW = srgb_view()


def _unpremultiply(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W, 4) premultiplied -> straight rgb (H, W, 3), alpha (H, W, 1), has_alpha mask."""
    rgb, alpha = rgba[..., :3], rgba[..., 3:4]
    has_alpha = alpha > ALPHA_EPSILON
    straight = np.where(has_alpha, rgb / np.where(has_alpha, alpha, 1.0), rgb)
    return straight.astype(np.float32), alpha, has_alpha


def to_display(rgba: np.ndarray, view: View = DEFAULT_VIEW) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Premultiplied linear RGBA (working space) -> (display RGB [0, 1], alpha, excess).

    rgba: (H, W, 4) float32, premultiplied. Returns display (H, W, 3) in [0, 1] as the
    artist sees it (clipped), alpha (H, W, 1) as given, and excess (H, W, 3): the linear
    amount the clipped display image does not carry, `straight - view.inverse(display)`
    (for pixels without alpha: their whole premultiplied colour, passed through).
    """
    straight, alpha, has_alpha = _unpremultiply(rgba)
    display = np.clip(view.forward(straight), 0.0, 1.0)
    excess = np.where(has_alpha, straight - view.inverse(display), rgba[..., :3])
    return display.astype(np.float32), alpha.astype(np.float32), excess.astype(np.float32)


def paper_white(view: View) -> np.ndarray:
    """(3,) display value of linear (1, 1, 1) -- diffuse white -- through `view`, at most 1.

    Standard: 1.0; Filmic: 0.81; AgX: 0.77 (Blender 5.0's config).
    """
    return np.minimum(view.forward(np.ones((1, 3), np.float32))[0], 1.0)


def to_linear(display: np.ndarray, alpha: np.ndarray, excess: np.ndarray,
              view: View = DEFAULT_VIEW, content: np.ndarray | None = None) -> np.ndarray:
    """Inverse of `to_display`: (display RGB, alpha, excess) -> premultiplied linear RGBA.

    display (H, W, 3) is clipped to [0, 1] first (an optimizer may overshoot a little).
    Unchanged display pixels give back the input exactly (up to float rounding).
    content: the display image `to_display` gave (H, W, 3). When given, a painted pixel is
    brightened at most to the view's diffuse white or to its own render value, whichever is
    brighter: a painting's white is paper, not a light, and near its white a filmic view's
    inverse is steep (AgX: display 0.93 -> linear 4.7, 1.0 -> 16.5), so a light stroke
    would otherwise become a firefly for the compositor's glare.
    """
    display = np.clip(display, 0.0, 1.0)
    if content is not None:
        display = np.minimum(display, np.maximum(content, paper_white(view)))
    straight = view.inverse(display) + excess
    has_alpha = alpha > ALPHA_EPSILON
    rgb = np.where(has_alpha, straight * alpha, excess)
    return np.concatenate([rgb, alpha], axis=-1).astype(np.float32)


# RGB -> YIQ (NTSC 1953, FCC): Y is luma, I and Q chroma. Gatys et al. 2016 use YIQ.
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.595716, -0.274453, -0.321263],
                       [0.211456, -0.522591, 0.311135]], np.float32)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ).astype(np.float32)


def rgb_to_yiq(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) display RGB [0, 1] -> (..., 3) YIQ (Y [0, 1], I ±0.6, Q ±0.53)."""
    return np.asarray(rgb, np.float32) @ RGB_TO_YIQ.T


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_yiq` (not clipped)."""
    return np.asarray(yiq, np.float32) @ YIQ_TO_RGB.T


def keep_chroma(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance-only transfer: the stylized luma Y with the content's chroma I, Q.

    stylized, content: (H, W, 3) display RGB [0, 1]. Returns (H, W, 3) display RGB, clipped
    to [0, 1] (a bright luma with a saturated chroma can leave the cube).
    """
    yiq = rgb_to_yiq(content)
    yiq[..., 0] = rgb_to_yiq(stylized)[..., 0]
    return np.clip(yiq_to_rgb(yiq), 0.0, 1.0)


def header_attributes(view: View) -> dict[str, Any]:
    """EXR header attributes naming the output's colour space (the input's working space)."""
    attributes: dict[str, Any] = {"flowstyle.working_space": view.working_space,
                                  "flowstyle.view": view.description,
                                  "flowstyle.ocio_config": view.source}
    # Without a known interop id, the config's own name is the best tag there is (and
    # better than claiming Rec.709).
    attributes["colorInteropID"] = view.interop_id or view.working_space
    if view.interop_id in CHROMATICITIES:
        attributes["chromaticities"] = CHROMATICITIES[view.interop_id]
    return attributes
