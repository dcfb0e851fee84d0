import numpy as np
import pytest
from PIL import Image

from deepsaliency.data import list_images, load_img, read_rgb, resize_image
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
