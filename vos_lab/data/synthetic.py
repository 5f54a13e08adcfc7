"""Procedural DAVIS-2017-style videos with exact multi-object masks: the course's embedded data set.

A video is a camera that pans, zooms and rolls over a textured background, and K textured objects
that translate, scale, rotate and deform elastically, occlude each other in a fixed depth order, cast
soft shadows, leave the frame and come back, all under changing illumination (global gain, colour
tint and a rotating light gradient).

Textures are crops of the photographs that scikit-image ships inside its installed package
(`skimage.data`, nothing is downloaded); grayscale ones are tinted with random colour ramps. Objects
often take their texture from the background's own photograph, and the background carries unlabelled
distractor blobs cut from the objects' photographs, so raw colour does not separate objects from
background.

Masks are exact by construction: an object's pixels and its label come from one warped silhouette,
composited back to front (painter's algorithm), so every labelled pixel shows the topmost object
there. Shadows are not part of any mask, as in DAVIS. Guarantees for every seed:
- frame 0 shows every object whole (disjoint, inside the frame), so its annotation holds all ids;
- one object (the *wanderer*) leaves the frame completely for about a sixth of the video and comes
  back (when frames >= 8);
- with two or more objects, one object's path runs through another's (an occlusion).

Geometry and appearance use separate random streams, so the geometry of a seed does not depend on
its textures.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from scipy.interpolate import CubicSpline

from vos_lab.data.davis import save_jpeg, save_palette_png
from vos_lab.errors import VosLabError
from vos_lab.paths import atomic_path

MAX_OBJECTS = 20
MIN_SIZE = 32
_BINS = 256  # angular resolution of the shape and deformation tables
_HARMONICS = np.array([1, 2, 3])  # deformation modes cos(k theta)
_COLOUR_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
_GRAY_IMAGES = ("grass", "gravel", "brick", "camera", "moon", "coins")


@dataclass(frozen=True)
class SyntheticVideo:
    """Frames (T, H, W, 3) uint8, masks (T, H, W) uint8 (0 background, 1..K by identity), and the
    amodal areas (T, K): pixels of each object's whole silhouette inside the frame, before occlusion
    (0 = out of the frame; visible area < amodal area = occluded)."""

    frames: np.ndarray
    masks: np.ndarray
    amodal_areas: np.ndarray

    @property
    def num_objects(self) -> int:
        return self.amodal_areas.shape[1]


# ----------------------------------------------------------------------------------------- textures
@lru_cache(maxsize=1)
def texture_sources() -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """(colour photographs RGB, grayscale photographs) that ship inside scikit-image: no download."""
    import skimage.data

    colour = [getattr(skimage.data, name)() for name in _COLOUR_IMAGES]
    colour.append(skimage.data.stereo_motorcycle()[0])
    gray = [getattr(skimage.data, name)() for name in _GRAY_IMAGES]
    for image in colour + gray:
        image.setflags(write=False)
    return tuple(colour), tuple(gray)


def _photo(rng: np.random.Generator) -> np.ndarray:
    """A random source photograph; grayscale ones get a random dark-to-bright colour ramp."""
    colour, gray = texture_sources()
    index = int(rng.integers(len(colour) + len(gray)))
    if index < len(colour):
        return colour[index]
    dark, bright = rng.uniform(0, 90, 3), rng.uniform(140, 255, 3)
    ramp = dark + (bright - dark) * np.linspace(0, 1, 256)[:, None]
    return ramp.astype(np.uint8)[gray[index - len(colour)]]


def _crop(rng: np.random.Generator, photo: np.ndarray, height: int, width: int, zoom: float) -> np.ndarray:
    """A random (height, width) crop of `photo`, magnified by about `zoom` (more when the photo is small)."""
    ph, pw = photo.shape[:2]
    scale = max(zoom, height / ph, width / pw)
    ch, cw = min(ph, max(1, round(height / scale))), min(pw, max(1, round(width / scale)))
    y, x = int(rng.integers(ph - ch + 1)), int(rng.integers(pw - cw + 1))
    patch = photo[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(patch), (width, height), interpolation=interpolation)


# ----------------------------------------------------------------------------------------- geometry
def _smooth_path(keys: np.ndarray, frames: int) -> np.ndarray:
    """Cubic spline through key values at evenly spaced times, sampled at every frame."""
    knots = np.linspace(0.0, 1.0, len(keys))
    return CubicSpline(knots, keys, bc_type="natural")(np.linspace(0.0, 1.0, frames))


def _blob_profile(rng: np.random.Generator) -> np.ndarray:
    """Radius per angle bin of a random star-shaped blob, max 1: a superellipse (from ellipse to
    rounded box) with random wobbles."""
    theta = np.linspace(0, 2 * np.pi, _BINS, endpoint=False)
    aspect, power = rng.uniform(0.45, 1.0), rng.uniform(2.0, 5.0)
    radius = (np.abs(np.cos(theta)) ** power + np.abs(np.sin(theta) / aspect) ** power) ** (-1 / power)
    for k, most in ((2, 0.2), (3, 0.15), (4, 0.1), (5, 0.08)):
        radius *= 1 + rng.uniform(0, most) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return radius / radius.max()


@dataclass
class _Object:
    """One object: a polar silhouette on a square sprite, and its pose and deformation per frame."""

    ident: int
    radius_grid: np.ndarray  # (S, S) silhouette radius at each sprite pixel's angle, sprite pixels
    rho: np.ndarray  # (S, S) distance of each sprite pixel from the centre
    dx: np.ndarray  # (S, S) sprite x offsets from the centre
    dy: np.ndarray
    angle_bin: np.ndarray  # (S, S) angle bin of each sprite pixel
    stretch: np.ndarray  # (T, BINS) radial stretch per frame and angle: the elastic deformation
    position: np.ndarray  # (T, 2) centre x, y in frame pixels
    scale: np.ndarray  # (T,) frame pixels per sprite pixel
    angle: np.ndarray  # (T,) rotation, radians
    extent: float  # max silhouette radius in sprite pixels over all frames

    @property
    def centre(self) -> float:
        return (self.rho.shape[0] - 1) / 2


@dataclass
class _Scene:
    height: int
    width: int
    objects: list[_Object]  # back to front
    camera: np.ndarray  # (T, 2, 3) frame -> background texture affine maps
    margin: int  # background texture = frame + margin on each side
    gain: np.ndarray  # (T, gh, gw, 3) low-resolution illumination gain
    shadow_offset: np.ndarray  # (2,) x, y in frame pixels


def _frame0_cells(count: int, height: int, width: int) -> tuple[int, int]:
    """Grid (rows, cols) with at least `count` cells whose smaller side is largest."""
    return max(((r, -(-count // r)) for r in range(1, count + 1)),
               key=lambda rc: min(height / rc[0], width / rc[1]))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _build_scene(rng: np.random.Generator, frames: int, height: int, width: int, count: int) -> _Scene:
    t = np.arange(frames)
    u = t / (frames - 1)
    n_keys = max(3, 2 + (frames - 1) // 12)
    rows, cols = _frame0_cells(count, height, width)
    cell_h, cell_w = height / rows, width / cols
    frame0_radius = min(0.5 * min(cell_h, cell_w), 0.35 * min(height, width))
    if frame0_radius < 4:
        raise VosLabError(f"height x width = {height}x{width} is too small for {count} objects")
    cells = rng.permutation(rows * cols)[:count]
    depth = rng.permutation(count)  # depth[i] = drawing rank (0 = back) of object id i + 1
    wanderer = int(rng.integers(count))
    others = [i for i in range(count) if i != wanderer]
    theta_bins = np.linspace(0, 2 * np.pi, _BINS, endpoint=False)

    keys, shapes = [], []
    for i in range(count):
        # Frame 0: a disc of radius rho0 inside its own grid cell, so all objects are whole and disjoint.
        rho0 = rng.uniform(0.6, 1.0) * frame0_radius
        r, c = divmod(int(cells[i]), cols)
        jitter = rng.uniform(-1, 1, 2) * [cell_w / 2 - rho0, cell_h / 2 - rho0]
        start = np.round([(c + 0.5) * cell_w + jitter[0], (r + 0.5) * cell_h + jitter[1]])
        path = [start]
        for _ in range(n_keys - 1):
            step = rng.uniform(0.1, 0.35) * np.sqrt(height * width)
            heading = rng.uniform(0, 2 * np.pi)
            nxt = path[-1] + step * np.array([np.cos(heading), np.sin(heading)])
            path.append(np.clip(nxt, [0.05 * width, 0.05 * height], [0.95 * width, 0.95 * height]))
        keys.append(np.array(path))
        log_scale = np.concatenate([[0.0], rng.uniform(-0.35, 0.35, n_keys - 1)])
        scale = np.exp(np.clip(_smooth_path(log_scale, frames), -0.45, 0.45))
        amp = rng.uniform(0.02, 0.08, len(_HARMONICS))
        freq = rng.uniform(2 * np.pi / 30, 2 * np.pi / 10, len(_HARMONICS))
        phase_t, phase_theta = rng.uniform(0, 2 * np.pi, (2, len(_HARMONICS)))
        modes = np.cos(_HARMONICS[:, None] * theta_bins + phase_theta[:, None])
        stretch = 1 + (amp * np.sin(freq * t[:, None] + phase_t)) @ modes  # (T, BINS)
        profile = _blob_profile(rng)
        angle = (rng.uniform(0, 2 * np.pi) + rng.uniform(-0.05, 0.05) * t
                 + rng.uniform(0, 0.3) * np.sin(2 * np.pi * t / rng.uniform(15, 40) + rng.uniform(0, 6.3)))
        shapes.append((rho0, scale, stretch, profile, angle))

    # Occlusion: one object's path passes through another object's position at a key time.
    if count >= 2:
        crosser, target = (others[0], wanderer) if count == 2 else tuple(rng.choice(others, 2, replace=False))
        key = n_keys - 1 if target == wanderer else int(rng.integers(1, n_keys))
        keys[crosser][key] = keys[target][key]

    objects = []
    for i in range(count):
        rho0, scale, stretch, profile, angle = shapes[i]
        position = _smooth_path(keys[i], frames)
        supersample = max(1.0, float(scale.max()))
        # Sprite radius so that the frame-0 silhouette fits a disc of radius rho0 - 1.5 frame pixels.
        radius = supersample * (rho0 - 1.5) / float((profile * stretch[0]).max())
        extent = radius * float((profile * stretch).max())
        half = int(np.ceil(extent)) + 1
        dy, dx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
        angle_bin = (np.round(np.arctan2(dy, dx) * (_BINS / (2 * np.pi))).astype(np.intp)) % _BINS
        frame_scale = scale / supersample
        if i == wanderer:
            position = _wander_out(rng, position, u, frame_scale.max() * extent + 3, height, width)
        objects.append(_Object(
            ident=i + 1, radius_grid=(radius * profile[angle_bin]).astype(np.float32),
            rho=np.hypot(dx, dy), dx=dx, dy=dy, angle_bin=angle_bin, stretch=stretch.astype(np.float32),
            position=position, scale=frame_scale, angle=angle, extent=extent))
    objects = [objects[i] for i in np.argsort(depth)]
    return _Scene(height, width, objects, *_camera(rng, u, height, width), *_lighting(rng, t, height, width))


def _wander_out(rng: np.random.Generator, position: np.ndarray, u: np.ndarray, bound: float,
                height: int, width: int) -> np.ndarray:
    """Blend the path out through the nearest border: fully outside for u in [a, a + 0.15] with a in
    [0.35, 0.45], smooth ramps of 0.3 on each side (at least one frame outside when frames >= 8)."""
    start = rng.uniform(0.35, 0.45)
    end = start + 0.15
    weight = _smoothstep((u - start + 0.3) / 0.3) * _smoothstep((end + 0.3 - u) / 0.3)
    middle = position[int(np.argmin(np.abs(u - (start + end) / 2)))]
    gaps = [middle[0], width - 1 - middle[0], middle[1], height - 1 - middle[1]]
    side = int(np.argmin(gaps))
    axis = side // 2
    outside = -bound if side % 2 == 0 else (width, height)[axis] - 1 + bound
    position = position.copy()
    position[:, axis] = (1 - weight) * position[:, axis] + weight * outside
    return position


def _camera(rng: np.random.Generator, u: np.ndarray, height: int, width: int) -> tuple[np.ndarray, int]:
    """Per-frame maps from frame pixels to background-texture pixels: pan, zoom-in and roll."""
    margin = round(0.15 * max(height, width))
    n_keys = len(u) // 12 + 3
    shift = _smooth_path(rng.uniform(-0.6, 0.6, (n_keys, 2)) * margin, len(u))
    zoom = np.exp(_smooth_path(rng.uniform(0, 0.12, n_keys), len(u)))
    roll = _smooth_path(rng.uniform(-0.05, 0.05, n_keys), len(u))
    a, b = np.cos(roll) / zoom, np.sin(roll) / zoom
    cx, cy = (width - 1) / 2, (height - 1) / 2
    maps = np.empty((len(u), 2, 3))
    maps[:, 0] = np.stack([a, -b, cx + margin + shift[:, 0] - (a * cx - b * cy)], 1)
    maps[:, 1] = np.stack([b, a, cy + margin + shift[:, 1] - (b * cx + a * cy)], 1)
    return maps, margin


def _lighting(rng: np.random.Generator, t: np.ndarray, height: int,
              width: int) -> tuple[np.ndarray, np.ndarray]:
    """Low-resolution gain maps (slow global gain, colour tint, rotating gradient) and shadow offset."""
    gh, gw = -(-height // 16) + 1, -(-width // 16) + 1
    y, x = np.mgrid[-1:1:gh * 1j, -1:1:gw * 1j]
    gain = rng.uniform(0.85, 1.05) + rng.uniform(0.15, 0.3) * np.sin(
        2 * np.pi * t / rng.uniform(20, 50) + rng.uniform(0, 2 * np.pi))
    tint = 1 + 0.06 * np.sin(2 * np.pi * t[:, None] / rng.uniform(20, 60) + rng.uniform(0, 6.3, 3))
    direction = rng.uniform(0, 2 * np.pi) + rng.uniform(-0.05, 0.05) * t
    slope = rng.uniform(0.1, 0.3)
    ramp = 1 + slope * (np.cos(direction)[:, None, None] * x + np.sin(direction)[:, None, None] * y)
    maps = gain[:, None, None, None] * tint[:, None, None, :] * ramp[..., None]
    light = rng.uniform(0, 2 * np.pi)
    offset = rng.uniform(0.015, 0.035) * min(height, width) * np.array([np.cos(light), np.sin(light)])
    return maps.astype(np.float32), offset


# ----------------------------------------------------------------------------------------- appearance
@dataclass
class _Appearance:
    background: np.ndarray  # (H + 2 margin, W + 2 margin, 3)
    textures: list[np.ndarray]  # per object in scene order: (S, S, 4), channel 3 unused
    shadow: float  # darkening under an object's shadow, 0 = none
    lit: bool


def _paste_blob(rng: np.random.Generator, canvas: np.ndarray, photo: np.ndarray, radius: int) -> None:
    """Paste a random blob of `photo` texture into `canvas` (background clutter, unlabelled)."""
    size = 2 * radius + 1
    y0, x0 = int(rng.integers(canvas.shape[0] - size)), int(rng.integers(canvas.shape[1] - size))
    dy, dx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    angle_bin = np.round(np.arctan2(dy, dx) * (_BINS / (2 * np.pi))).astype(np.intp) % _BINS
    inside = np.hypot(dx, dy) < radius * _blob_profile(rng)[angle_bin]
    patch = _crop(rng, photo, size, size, rng.uniform(0.5, 1.5))
    canvas[y0:y0 + size, x0:x0 + size][inside] = patch[inside]


def _textured(rng: np.random.Generator, scene: _Scene) -> _Appearance:
    height, width, margin = scene.height, scene.width, scene.margin
    back_photo = _photo(rng)
    background = _crop(rng, back_photo, height + 2 * margin, width + 2 * margin, rng.uniform(0.6, 1.6))
    textures = []
    for obj in scene.objects:
        photo = back_photo if rng.random() < 0.4 else _photo(rng)
        size = obj.rho.shape[0]
        texture = _crop(rng, photo, size, size, size / (rng.uniform(0.2, 0.6) * min(photo.shape[:2])))
        rim = np.clip(obj.rho / np.maximum(obj.radius_grid, 1e-3), 0, 1) ** 3
        tone = (1 - 0.3 * rim)[..., None] * rng.uniform(0.85, 1.15, 3)  # darker rim: a rounded look
        texture = np.clip(texture * tone, 0, 255).astype(np.uint8)
        textures.append(np.dstack([texture, np.zeros_like(texture[..., 0])]))
        if rng.random() < 0.6:  # clutter from the object's own photograph
            radius = int(rng.uniform(0.3, 0.8) * size / 2) + 2
            if 2 * radius + 1 < min(background.shape[:2]):
                _paste_blob(rng, background, photo, radius)
    return _Appearance(background, textures, rng.uniform(0.25, 0.45), lit=True)


def _flat(scene: _Scene) -> _Appearance:
    """Each object painted in its id value on black, no shadow or light: frames then equal the masks."""
    height, width, margin = scene.height, scene.width, scene.margin
    background = np.zeros((height + 2 * margin, width + 2 * margin, 3), np.uint8)
    textures = [np.full((*o.rho.shape, 4), o.ident, np.uint8) for o in scene.objects]
    return _Appearance(background, textures, 0.0, lit=False)


# ----------------------------------------------------------------------------------------- rendering
def _object_layer(obj: _Object, texture: np.ndarray, t: int, height: int,
                  width: int) -> tuple[int, int, np.ndarray, np.ndarray] | None:
    """(y0, x0, rgb, silhouette) of the object in frame t, clipped to the frame; None when outside."""
    x, y = obj.position[t]
    reach = obj.scale[t] * obj.extent + 2
    x0, x1 = max(int(np.floor(x - reach)), 0), min(int(np.ceil(x + reach)) + 1, width)
    y0, y1 = max(int(np.floor(y - reach)), 0), min(int(np.ceil(y + reach)) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    # Elastic deformation in sprite space: the point at radius r moves to r * stretch(angle).
    inverse = 1.0 / obj.stretch[t][obj.angle_bin]
    c = obj.centre
    sprite = cv2.remap(texture, obj.dx * inverse + c, obj.dy * inverse + c, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REFLECT)
    sprite[..., 3] = (obj.rho * inverse < obj.radius_grid) * np.uint8(255)
    # Similarity (rotation, scale, translation) into the clipped bounding box.
    a, b = obj.scale[t] * np.cos(obj.angle[t]), obj.scale[t] * np.sin(obj.angle[t])
    warp = np.array([[a, -b, x - x0 - (a - b) * c], [b, a, y - y0 - (a + b) * c]])
    layer = cv2.warpAffine(sprite, warp, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return y0, x0, layer[..., :3], layer[..., 3] > 127


def _cast_shadow(frame: np.ndarray, silhouette: np.ndarray, y0: int, x0: int, strength: float) -> None:
    """Darken what is already drawn under the silhouette shifted to (y0, x0), with a soft edge."""
    h, w = silhouette.shape
    ya, xa, yb, xb = max(y0, 0), max(x0, 0), min(y0 + h, frame.shape[0]), min(x0 + w, frame.shape[1])
    if yb <= ya or xb <= xa:
        return
    soft = cv2.blur(silhouette.astype(np.uint8) * np.uint8(255), (5, 5))[ya - y0:yb - y0, xa - x0:xb - x0]
    keep = (256 - (soft.astype(np.uint16) * round(strength * 256) >> 8))[..., None]
    region = frame[ya:yb, xa:xb]
    region[:] = (region * keep) >> 8


def _render(scene: _Scene, look: _Appearance, frames: int) -> SyntheticVideo:
    height, width = scene.height, scene.width
    video = np.empty((frames, height, width, 3), np.uint8)
    masks = np.zeros((frames, height, width), np.uint8)
    amodal = np.zeros((frames, len(scene.objects)), np.int64)
    for t in range(frames):
        frame = cv2.warpAffine(look.background, scene.camera[t], (width, height),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT101)
        for obj, texture in zip(scene.objects, look.textures, strict=True):
            layer = _object_layer(obj, texture, t, height, width)
            if layer is None:
                continue
            y0, x0, rgb, silhouette = layer
            amodal[t, obj.ident - 1] = np.count_nonzero(silhouette)
            if look.shadow > 0:
                dx, dy = np.round(scene.shadow_offset).astype(int)
                _cast_shadow(frame, silhouette, y0 + dy, x0 + dx, look.shadow)
            h, w = silhouette.shape
            np.copyto(frame[y0:y0 + h, x0:x0 + w], rgb, where=silhouette[..., None])
            masks[t, y0:y0 + h, x0:x0 + w][silhouette] = obj.ident
        if look.lit:
            gain = cv2.resize(np.clip(scene.gain[t] * 128, 0, 255).astype(np.uint8), (width, height),
                              interpolation=cv2.INTER_LINEAR)
            frame = cv2.multiply(frame, gain, scale=1 / 128)
        video[t] = frame
    return SyntheticVideo(video, masks, amodal)


# ----------------------------------------------------------------------------------------- public API
def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise VosLabError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise VosLabError(f"{name} must be {allowed}, got {value}")
    return int(value)


def _validate(seed, frames, height, width, objects) -> tuple[int, int, int, int, int]:
    return (_check_int("seed", seed, 0), _check_int("frames", frames, 2),
            _check_int("height", height, MIN_SIZE), _check_int("width", width, MIN_SIZE),
            _check_int("objects", objects, 1, MAX_OBJECTS))


def _streams(seed: int, frames: int, height: int, width: int, objects: int):
    """(scene, appearance generator, frames): geometry and textures draw from separate streams."""
    seed, frames, height, width, objects = _validate(seed, frames, height, width, objects)
    geometry, appearance = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    return _build_scene(geometry, frames, height, width, objects), appearance, frames


def generate_video(seed: int, frames: int = 30, height: int = 240, width: int = 432,
                   objects: int = 3) -> SyntheticVideo:
    """A deterministic synthetic video with exact masks (see the module docstring for what moves)."""
    scene, rng, frames = _streams(seed, frames, height, width, objects)
    return _render(scene, _textured(rng, scene), frames)


def flat_video(seed: int, frames: int = 30, height: int = 240, width: int = 432,
               objects: int = 3) -> SyntheticVideo:
    """The same geometry as `generate_video` with each object painted in its id on black, unlit:
    frame[..., c] == mask everywhere, which shows (and tests) that the masks are exact."""
    scene, _, frames = _streams(seed, frames, height, width, objects)
    return _render(scene, _flat(scene), frames)


def sequence_seed(seed: int, index: int) -> int:
    """The `generate_video` seed of sequence `index` in a data set written with `seed`."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _remove_stale(folder: Path, suffix: str, keep: set[str]) -> None:
    """Delete files of a previous, longer write (and temporaries of an interrupted one)."""
    for path in folder.glob(f"*{suffix}"):
        if path.name not in keep:
            path.unlink()


def write_synthetic_davis(root: Path, sequences: int = 4, frames: int = 30, height: int = 240,
                          width: int = 432, seed: int = 0, objects: int = 3) -> list[str]:
    """Write `sequences` videos in the DAVIS-2017 layout under `root` and list them in
    ImageSets/2017/val.txt; returns the sequence names (synth-000, ...). Every file is written
    atomically, and writing again with the same arguments gives the same bytes."""
    sequences = _check_int("sequences", sequences, 1)
    seed, frames, height, width, objects = _validate(seed, frames, height, width, objects)
    root = Path(root).expanduser()
    names = []
    for index in range(sequences):
        name = f"synth-{index:03d}"
        video = generate_video(sequence_seed(seed, index), frames, height, width, objects)
        jpeg_dir, mask_dir = root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name
        for t in range(frames):
            save_jpeg(jpeg_dir / f"{t:05d}.jpg", video.frames[t])
            save_palette_png(mask_dir / f"{t:05d}.png", video.masks[t])
        _remove_stale(jpeg_dir, ".jpg", {f"{t:05d}.jpg" for t in range(frames)})
        _remove_stale(mask_dir, ".png", {f"{t:05d}.png" for t in range(frames)})
        names.append(name)
    _write_text(root / "ImageSets" / "2017" / "val.txt", "".join(f"{name}\n" for name in names))
    return names
