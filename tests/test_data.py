import numpy as np
import pytest
from PIL import Image

from deepsaliency.data import IMAGE_EXTENSIONS, list_images, load_img, read_rgb, resize_image, to_rgb
from deepsaliency.errors import ImageError

RNG = np.random.default_rng(0)
PHOTO = (RNG.random((40, 60, 3)) * 255).astype(np.uint8)


def save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.mark.parametrize(
    "name, make",
    [
        ("gray.png", lambda: Image.fromarray(PHOTO[..., 0], "L")),
        ("rgba.png", lambda: Image.fromarray(np.dstack([PHOTO, np.full(PHOTO.shape[:2], 128, np.uint8)]), "RGBA")),
        ("palette.png", lambda: Image.fromarray(PHOTO).convert("P", palette=Image.Palette.ADAPTIVE)),
        ("cmyk.jpg", lambda: Image.fromarray(PHOTO).convert("CMYK")),
        ("photo.bmp", lambda: Image.fromarray(PHOTO)),
        ("photo.tiff", lambda: Image.fromarray(PHOTO)),
        ("photo.webp", lambda: Image.fromarray(PHOTO)),
    ],
)
def test_odd_but_valid_images_become_rgb(tmp_path, name, make):
    rgb = read_rgb(save(make(), tmp_path / name))
    assert rgb.dtype == np.uint8 and rgb.shape == (40, 60, 3)


def test_sixteen_bit_gray_keeps_its_dynamic_range(tmp_path):
    ramp = np.linspace(0, 65535, 40 * 60).reshape(40, 60).astype(np.uint16)
    rgb = read_rgb(save(Image.fromarray(ramp), tmp_path / "deep.png"))
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and 120 < rgb[20, 30, 0] < 135


def test_exif_orientation_is_honoured(tmp_path):
    img = Image.fromarray(PHOTO)  # 40 high, 60 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    rgb = read_rgb(save(img, tmp_path / "rotated.jpg", exif=exif.tobytes()))
    assert rgb.shape == (60, 40, 3)


def test_tiny_and_large_images_resize_to_the_input_size(tmp_path):
    tiny = save(Image.fromarray(PHOTO[:8, :8]), tmp_path / "tiny.png")
    large = save(Image.fromarray(np.zeros((4000, 6000, 3), np.uint8)), tmp_path / "large.png")
    for path in (tiny, large):
        img, x = load_img(path)
        assert img.shape == (224, 224, 3) and x.shape == (1, 3, 224, 224)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_center_crop_keeps_the_aspect_ratio():
    wide = np.zeros((100, 200, 3), np.uint8)
    wide[:, 50:150] = 255  # the centre square is white
    out = resize_image(wide, (50, 50), "center_crop")
    assert out.shape == (50, 50, 3) and out[:, 2:-2].min() == 255  # only the resampled edge blends
    stretched = resize_image(wide, (50, 50), "stretch")
    assert stretched[:, 0].max() == 0  # stretching keeps the black sides


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.png", b"", "empty file"),
        ("text.jpg", b"this is not an image at all", "unknown format"),
    ],
)
def test_unreadable_files_are_named_with_the_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=rf"{name}: not a readable image \({reason}\)"):
        read_rgb(path)


def test_truncated_file_is_named(tmp_path):
    good = save(Image.fromarray(PHOTO), tmp_path / "full.png")
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageError, match=r"cut.png: not a readable image \(.*truncated.*\)"):
        read_rgb(cut)


def test_empty_folder_and_duplicate_names(tmp_path):
    with pytest.raises(ImageError, match=r"no images found \(allowed extensions"):
        list_images(tmp_path)
    save(Image.fromarray(PHOTO), tmp_path / "a.png")
    save(Image.fromarray(PHOTO), tmp_path / "a.jpg")
    with pytest.raises(ImageError, match=r"several files share the name 'a'"):
        list_images(tmp_path)


# ------------------------------------------------------------------------------------------ every pixel mode
def pixels(mode: str, values: list, size=None) -> Image.Image:
    """A 1-row image of ``mode`` whose pixels are ``values`` (Pillow's getpixel/putpixel convention)."""
    img = Image.new(mode, size or (len(values), 1))
    for i, v in enumerate(values):
        img.putpixel((i, 0), v)
    return img


def palette(mode: str, entries: list[tuple], transparency=None) -> Image.Image:
    img = Image.new(mode, (len(entries), 1))
    img.putpalette([10, 20, 30, 200, 100, 50])
    for i, v in enumerate(entries):
        img.putpixel((i, 0), v)
    if transparency is not None:
        img.info["transparency"] = transparency
    return img


def arr(values, dtype) -> Image.Image:
    return Image.fromarray(np.array([values], dtype))


def over_white(c: int, a: int) -> int:
    return round((c * a + 255 * (255 - a)) / 255)  # alpha compositing (Porter & Duff 1984) on white


@pytest.mark.parametrize(
    "mode, make, expected",
    [
        ("1", lambda: pixels("1", [0, 1]), [(0, 0, 0), (255, 255, 255)]),
        ("L", lambda: pixels("L", [0, 77, 255]), [(0, 0, 0), (77, 77, 77), (255, 255, 255)]),
        (
            "LA",
            lambda: pixels("LA", [(100, 255), (100, 0), (100, 128)]),
            [(100,) * 3, (255,) * 3, (over_white(100, 128),) * 3],
        ),
        ("P", lambda: palette("P", [0, 1]), [(10, 20, 30), (200, 100, 50)]),
        ("P+transparency", lambda: palette("P", [0, 1], transparency=1), [(10, 20, 30), (255, 255, 255)]),
        ("PA", lambda: palette("PA", [(1, 255), (1, 0)]), [(200, 100, 50), (255, 255, 255)]),
        ("I", lambda: arr([0, 1000, 65535], np.int32), [(0,) * 3, (4,) * 3, (255,) * 3]),
        ("I 8-bit range", lambda: arr([0, 77, 255], np.int32), [(0,) * 3, (77,) * 3, (255,) * 3]),
        ("I;16", lambda: arr([0, 32768, 65535], np.uint16), [(0,) * 3, (128,) * 3, (255,) * 3]),
        (
            "I;16B",
            lambda: Image.frombytes("I;16B", (3, 1), np.array([0, 32768, 65535], ">u2").tobytes()),
            [(0,) * 3, (128,) * 3, (255,) * 3],
        ),
        (
            "I;16L",
            lambda: Image.frombytes("I;16L", (3, 1), np.array([0, 257, 65535], "<u2").tobytes()),
            [(0,) * 3, (1,) * 3, (255,) * 3],
        ),
        ("F [0, 1]", lambda: arr([0.0, 0.5, 1.0], np.float32), [(0,) * 3, (128,) * 3, (255,) * 3]),
        ("F [0, 255]", lambda: arr([0.0, 100.4, 255.0], np.float32), [(0,) * 3, (100,) * 3, (255,) * 3]),
        ("RGB", lambda: pixels("RGB", [(1, 2, 3), (250, 128, 0)]), [(1, 2, 3), (250, 128, 0)]),
        (
            "RGBA",
            lambda: pixels("RGBA", [(200, 100, 50, 255), (200, 100, 50, 0), (200, 100, 50, 128)]),
            [(200, 100, 50), (255, 255, 255), tuple(over_white(c, 128) for c in (200, 100, 50))],
        ),
        # CMYK → RGB: (255 − C)(255 − K)/255, Pillow's conversion.
        (
            "CMYK",
            lambda: pixels("CMYK", [(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255), (128, 0, 0, 128)]),
            [(255, 255, 255), (0, 255, 255), (0, 0, 0), (63, 127, 127)],
        ),
        # Pillow's own RGB → YCbCr (JFIF) of pure red and mid grey, converted back.
        (
            "YCbCr",
            lambda: pixels("RGB", [(255, 0, 0), (128, 128, 128)]).convert("YCbCr"),
            [(254, 0, 0), (128, 128, 128)],
        ),
        (
            "HSV",
            lambda: pixels("RGB", [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 200, 200)]).convert("HSV"),
            [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 200, 200)],
        ),
    ],
)
def test_every_pixel_mode_becomes_the_right_rgb(mode, make, expected):
    img = make()
    assert img.mode == mode.split()[0].split("+")[0]
    rgb = to_rgb(img, "probe")
    assert rgb.dtype == np.uint8 and rgb.shape == (1, len(expected), 3)
    assert [tuple(int(c) for c in px) for px in rgb[0]] == expected


def test_lab_is_converted_by_scikit_image():
    # White and black exactly; sRGB red through skimage.color.rgb2lab, quantised to Pillow's 8-bit Lab, comes
    # back as red within the quantisation error (Pillow's own convert would return (0, 255, 255) for white).
    from skimage.color import rgb2lab

    lightness, a, b = rgb2lab(np.array([[[1.0, 0.0, 0.0]]]))[0, 0]
    red = (round(lightness * 255 / 100), round(a) + 128, round(b) + 128)
    rgb = to_rgb(pixels("LAB", [(255, 128, 128), (0, 128, 128), red]), "lab")
    assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[0, 1].tolist() == [0, 0, 0]
    assert rgb[0, 2, 0] >= 253 and rgb[0, 2, 1:].max() <= 3


@pytest.mark.parametrize(
    "name, mode, make, expected",
    [
        ("lab.tif", "LAB", lambda: pixels("LAB", [(255, 128, 128), (0, 128, 128)]), [(255,) * 3, (0,) * 3]),
        (
            "ycc.tif",
            "YCbCr",
            lambda: pixels("RGB", [(255, 0, 0), (128, 128, 128)]).convert("YCbCr"),
            [(254, 0, 0), (128,) * 3],
        ),
        ("cmyk.tif", "CMYK", lambda: pixels("CMYK", [(128, 0, 0, 128), (0, 0, 0, 0)]), [(63, 127, 127), (255,) * 3]),
        ("float.tif", "F", lambda: arr([0.0, 0.5, 1.0], np.float32), [(0,) * 3, (128,) * 3, (255,) * 3]),
        (
            "deep16.tif",
            "I;16B",
            lambda: Image.frombytes("I;16B", (2, 1), np.array([32768, 65535], ">u2").tobytes()),
            [(128,) * 3, (255,) * 3],
        ),
        ("la.png", "LA", lambda: pixels("LA", [(100, 0), (100, 255)]), [(255,) * 3, (100,) * 3]),
        ("palette.gif", "P", lambda: palette("P", [0, 1]), [(10, 20, 30), (200, 100, 50)]),
    ],
)
def test_pixel_modes_survive_a_file(tmp_path, name, mode, make, expected):
    path = save(make(), tmp_path / name)
    with Image.open(path) as img:
        assert img.mode == mode  # the file really holds that mode
    assert [tuple(int(c) for c in px) for px in read_rgb(path)[0]] == expected


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: arr([-5, 10], np.int32), r"probe: integer pixels in \[-5, 10\] are not allowed"),
        (lambda: arr([0, 70000], np.int32), r"probe: integer pixels in \[0, 70000\] are not allowed"),
        (lambda: arr([0.0, 300.0], np.float32), r"probe: float pixels in \[0, 300\] are not allowed"),
        (lambda: arr([-0.5, 0.5], np.float32), r"probe: float pixels in \[-0.5, 0.5\] are not allowed"),
        (lambda: arr([np.nan, 0.5], np.float32), r"probe: float pixels .* are not allowed"),
        (lambda: Image.new("La", (2, 1)), r"probe: pixel mode 'La' is not supported"),
    ],
)
def test_pixels_without_a_right_rgb_are_refused(make, message):
    with pytest.raises(ImageError, match=message):
        to_rgb(make(), "probe")


def test_gif_and_animations_are_read_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    with Image.open(tmp_path / "anim.gif") as img:
        assert img.n_frames == 3
    assert read_rgb(tmp_path / "anim.gif")[0, 0].tolist() == [255, 0, 0]
    assert ".gif" in IMAGE_EXTENSIONS and ".tga" in IMAGE_EXTENSIONS and ".txt" not in IMAGE_EXTENSIONS


def test_unknown_resize_mode_names_the_argument():
    from deepsaliency.errors import ParamError

    with pytest.raises(ParamError, match=r"^mode: 'squash' is not allowed \(use one of stretch, center_crop\)$"):
        resize_image(PHOTO, (10, 10), "squash")
