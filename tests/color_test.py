"""Tests for nst_jax.color: YIQ, luminance-only transfer, colour matching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import color


def _images():
  k1, k2 = jax.random.split(jax.random.key(0))
  # A dark, saturated style and a mid-range, differently tinted content.
  style = jax.random.uniform(k1, (20, 24, 3)) ** 2 * jnp.asarray([1.0, 0.6, 0.3])
  content = 0.3 + 0.4 * jax.random.uniform(k2, (16, 16, 3))
  return style, content


def _mean_cov(rgb):
  flat = np.asarray(rgb, np.float64).reshape(-1, 3)
  return flat.mean(0), np.cov(flat.T, bias=True)


def test_yiq_round_trip_and_known_values():
  style, _ = _images()
  np.testing.assert_allclose(color.yiq_to_rgb(color.rgb_to_yiq(style)), style,
                             atol=1e-6)
  yiq = color.rgb_to_yiq(jnp.asarray([[1.0, 1.0, 1.0], [0.5, 0.5, 0.5],
                                      [1.0, 0.0, 0.0]]))
  # Greys have no chroma and Y equal to their level; red's Y is 0.299.
  np.testing.assert_allclose(yiq[:2], [[1, 0, 0], [0.5, 0, 0]], atol=1e-6)
  np.testing.assert_allclose(yiq[2], [0.299, 0.595716, 0.211456], atol=1e-6)


def test_matched_luminance_has_the_content_mean_and_std():
  style, content = _images()
  style_y = color.rgb_to_yiq(style)[..., 0]
  content_y = color.rgb_to_yiq(content)[..., 0]
  matched = color.match_luminance(style_y, content_y)
  assert matched.shape == style_y.shape
  np.testing.assert_allclose(jnp.mean(matched), jnp.mean(content_y), atol=1e-6)
  np.testing.assert_allclose(jnp.std(matched), jnp.std(content_y), rtol=1e-5)
  # It is affine and increasing: the ranks of the style pixels are kept.
  np.testing.assert_array_equal(jnp.argsort(matched.ravel()),
                                jnp.argsort(style_y.ravel()))


def test_luminance_only_gives_grey_images():
  style, content = _images()
  content_lum, style_lum = color.luminance_only(content, style)
  assert content_lum.shape == content.shape and style_lum.shape == style.shape
  for grey in (content_lum, style_lum):
    np.testing.assert_allclose(grey[..., 1:], grey[..., :1].repeat(2, -1))
    assert float(grey.min()) >= 0 and float(grey.max()) <= 1
  np.testing.assert_allclose(content_lum[..., 0],
                             color.rgb_to_yiq(content)[..., 0], atol=1e-6)
  # The style's luminance took the content's statistics (it stays in [0, 1]
  # here, so clipping did not move them).
  np.testing.assert_allclose(jnp.mean(style_lum), jnp.mean(content_lum),
                             atol=1e-5)
  np.testing.assert_allclose(jnp.std(style_lum[..., 0]),
                             jnp.std(content_lum[..., 0]), rtol=1e-4)


def test_recombined_result_keeps_the_content_chroma():
  _, content = _images()
  # A grey "stylised" result, mid-range so that no pixel needs clipping.
  result_y = 0.4 + 0.2 * jax.random.uniform(jax.random.key(3), (16, 16))
  result = jnp.repeat(result_y[..., None], 3, axis=-1)
  out = color.recombine_luminance(result, content)
  assert float(out.min()) > 0 and float(out.max()) < 1
  out_yiq, content_yiq = color.rgb_to_yiq(out), color.rgb_to_yiq(content)
  np.testing.assert_allclose(out_yiq[..., 1:], content_yiq[..., 1:], atol=1e-6)
  np.testing.assert_allclose(out_yiq[..., 0], result_y, atol=1e-6)
  # Out-of-gamut combinations are clipped back to valid pixels.
  white = color.recombine_luminance(jnp.ones((2, 2, 3)),
                                    jnp.full((2, 2, 3), 0.5).at[..., 0].set(1))
  assert float(white.min()) >= 0 and float(white.max()) <= 1
  with pytest.raises(ValueError, match='shape'):
    color.recombine_luminance(result[:8], content)


@pytest.mark.parametrize('mode', color.COLOR_MATCH_MODES)
def test_color_matching_gives_the_content_mean_and_covariance(mode):
  style, content = _images()
  out = color.match_color_histogram(style, content, mode, clip=False)
  assert out.shape == style.shape
  mean, cov = _mean_cov(out)
  content_mean, content_cov = _mean_cov(content)
  np.testing.assert_allclose(mean, content_mean, atol=1e-3)
  np.testing.assert_allclose(cov, content_cov, atol=1e-3)
  # Meaningful only if the style's statistics were far from the content's.
  style_mean, style_cov = _mean_cov(style)
  assert np.abs(style_mean - content_mean).max() > 0.1
  assert np.abs(style_cov - content_cov).max() > 5e-3
  clipped = color.match_color_histogram(style, content, mode)
  assert float(clipped.min()) >= 0 and float(clipped.max()) <= 1


def test_pca_matching_is_the_symmetric_square_root():
  style, content = _images()
  out = jax.jit(color.match_color_histogram, static_argnames=('mode', 'clip'))(
      style, content, mode='pca', clip=False)
  mu_s, cov_s = _mean_cov(style)
  mu_c, cov_c = _mean_cov(content)

  def sqrt(m, power):
    w, v = np.linalg.eigh(m)
    return (v * w ** power) @ v.T

  a = sqrt(cov_c, 0.5) @ sqrt(cov_s, -0.5)
  ref = (np.asarray(style, np.float64) - mu_s) @ a.T + mu_c
  np.testing.assert_allclose(out, ref, atol=1e-3)


def test_color_matching_survives_a_grey_style():
  _, content = _images()
  grey = jnp.repeat(jax.random.uniform(jax.random.key(4), (8, 8, 1)), 3, -1)
  for mode in color.COLOR_MATCH_MODES:
    out = color.match_color_histogram(grey, content, mode)
    assert bool(jnp.all(jnp.isfinite(out)))
  with pytest.raises(ValueError, match='mode'):
    color.match_color_histogram(grey, content, 'lab')
