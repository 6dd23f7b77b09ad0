import numpy as np

from models.train import AugmentConfig
from models.train.augment import augment, build_augment


def asymmetric(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Three channels whose argmax draws an asymmetric pattern (no flip or rotation maps it to itself)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    ell = np.zeros((size, size), np.float32)
    ell[8:40, 10:18] = 2.0
    ell[32:40, 10:50] = 2.0  # an L
    image = np.stack([xx, 0.9 * yy + 0.05, ell])
    return image, f(image)


def f(image: np.ndarray) -> np.ndarray:
    """The mask as a function of the image; invariant to one brightness/contrast change of all channels."""
    return np.argmax(image, axis=0).astype(np.uint8)


def test_mask_follows_image_through_flips_rotations_and_brightness():
    image, mask = asymmetric()
    cfg = AugmentConfig(scale_p=0.0, noise_p=0.0, brightness_p=1.0, brightness=0.5, contrast=0.5)
    pipe = build_augment(cfg, seed=1)
    changed = 0
    for _ in range(16):
        img, lab = augment(pipe, image, mask)
        assert img.shape == image.shape and lab.shape == mask.shape
        np.testing.assert_array_equal(lab, f(img))
        changed += not np.array_equal(lab, mask)
    assert changed >= 8  # the transforms really moved the pattern


def test_zoom_keeps_mask_on_image_and_fills_ignore():
    image, mask = asymmetric()
    cfg = AugmentConfig(flips=True, scale=(0.7, 0.8), scale_p=1.0, brightness_p=0.0, noise_p=0.0)
    pipe = build_augment(cfg, seed=3)
    for _ in range(6):
        img, lab = augment(pipe, image, mask)
        inside = lab != 255
        assert (~inside).any()  # zooming out brings in pixels from outside: ignored
        agree = (lab[inside] == f(img)[inside]).mean()
        assert agree > 0.95, agree  # only pixels on class edges may differ (linear vs nearest)


def test_disabled_augmentation_is_identity():
    image, mask = asymmetric()
    assert build_augment(AugmentConfig(enabled=False)) is None
    img, lab = augment(None, image, mask)
    assert img is image and lab is mask
