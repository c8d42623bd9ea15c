"""Shared test setup: the public test images and small random VGG params."""

import os
from pathlib import Path

import jax
import pytest

from nst_jax import vgg

REPO = Path(__file__).resolve().parents[1]
_SHARED_IMAGES = REPO.parent / 'shared' / 'images'

# CI sets NST_ASSETS_DIR=../shared/images; default to it for local runs too.
if 'NST_ASSETS_DIR' not in os.environ and _SHARED_IMAGES.is_dir():
  os.environ['NST_ASSETS_DIR'] = str(_SHARED_IMAGES)


@pytest.fixture(scope='session')
def random_params():
  """He-initialised VGG19 params: for tests about the maths, not the weights."""
  return vgg.init_random_params(jax.random.key(0))
