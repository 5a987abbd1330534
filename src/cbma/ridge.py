"""Ridge regression from sufficient statistics, its penalty chosen by GCV, in closed form.

The text model's regression: from the centred Gram matrix ``X^T X`` of the
features (terms x terms) and ``X^T Y`` (terms x voxels) alone, never the
studies x voxels target matrix, an eigendecomposition gives the generalised
cross-validation (GCV) error of every candidate penalty ``alpha`` and the
coefficients of the best one (:class:`RidgeGCV`). One penalty serves all
voxels. Features can be a linear transform of ``X`` (the text model's
semantic smoothing) and each can be scaled (an adaptive ridge), and
:meth:`RidgeGCV.z_energy` scores each feature for NeuroQuery's screening.
"""

import numpy as np

__all__ = ["VOXEL_BLOCK", "RidgeGCV"]

#: Voxels (columns of ``X^T Y``) processed at once: no features x voxels temporary.
VOXEL_BLOCK = 4096


class RidgeGCV:
    """Ridge of centred targets on (a subset of) the smoothed features, in closed form.

    The features are ``X T`` (``T``: ``transform``, terms x features), optionally
    each scaled by ``scale`` (an adaptive ridge: feature ``j`` is penalised
    ``alpha / scale_j^2``). From the centred Gram matrix ``G`` of ``X`` and
    ``X^T Y_c`` only: the eigendecomposition of ``S T^T G T S`` (``S`` =
    diag(scale)) gives the GCV error of every ``alpha`` and the coefficients.

    Parameters
    ----------
    transform : ndarray of shape (n_terms, n_features)
        ``T``: the features as linear combinations of the columns of ``X``.
    gram : ndarray of shape (n_terms, n_terms)
        The centred ``X^T X``.
    xty : ndarray of shape (n_terms, n_voxels)
        The centred ``X^T Y``.
    ysq_c : ndarray of shape (n_voxels,)
        ``|Y_c|^2`` of each voxel (centred targets).
    alphas : ndarray
        Candidate penalties.
    n : int
        Number of studies.
    scale : ndarray of shape (n_features,), optional
        Feature scales (default 1).

    Attributes
    ----------
    alpha : float
        The candidate penalty with the smallest GCV error.
    gcv : ndarray of shape (len(alphas),)
        GCV error of each penalty (mean squared error per study and voxel).
    residual_var : ndarray of shape (n_voxels,)
        ``RSS / n`` of each voxel at ``alpha``.
    """

    def __init__(self, transform, gram, xty, ysq_c, alphas, n, scale=None):
        k = transform.shape[1]
        scale = np.ones(k) if scale is None else np.asarray(scale, dtype=float)
        gram_s = scale[:, None] * (transform.T @ gram @ transform) * scale[None, :]
        s2, vecs = np.linalg.eigh((gram_s + gram_s.T) / 2)
        s2 = np.clip(s2, 0.0, None)
        # Z = E^T S T^T X^T Y_c (E: eigenvectors): the fit in the eigenbasis; products in
        # float32 (the slow part at full scale), accumulations in float64
        self.project = (vecs.T @ (scale[:, None] * transform.T)).astype(np.float32)
        self.xty, self.s2, self.vecs, self.scale, self.n = xty, s2, vecs, scale, n
        v = xty.shape[1]
        # RSS(alpha) per voxel = |Y_c|^2 - sum_j Z_j^2 (s_j^2 + 2 alpha) / (s_j^2 + alpha)^2:
        # no division by the (possibly zero) eigenvalues s_j^2
        denom = s2[None, :] + alphas[:, None]
        explained = (s2[None, :] + 2 * alphas[:, None]) / denom**2
        rss = np.empty((alphas.size, v))
        for c in range(0, v, VOXEL_BLOCK):
            z = self.project @ xty[:, c:c + VOXEL_BLOCK].astype(np.float32)
            zz = np.square(z, dtype=float)
            rss[:, c:c + VOXEL_BLOCK] = ysq_c[None, c:c + VOXEL_BLOCK] - explained @ zz
        rss = np.maximum(rss, 0.0)
        dof = 1 + (s2[None, :] / denom).sum(axis=1)
        self.gcv = rss.sum(axis=1) / (n * v) / (1 - np.minimum(dof, n - 0.5) / n) ** 2
        best = int(np.argmin(self.gcv))
        self.alpha = float(alphas[best])
        self.residual_var = rss[best] / n
        self.solve = (scale[:, None] * ((vecs / (s2 + self.alpha)) @ self.project.astype(float))
                      ).astype(np.float32)

    def coef(self, start, stop):
        """Coefficients (features x voxels ``start:stop``), float32."""
        return self.solve @ self.xty[:, start:stop].astype(np.float32)

    def z_energy(self):
        """NeuroQuery's feature "z-energy": mean over voxels of ``max(z, 0)^2``.

        ``z = coef / sqrt(var + mean var)``, ``var`` the sampling variance of
        each coefficient (``||row of the hat factor||^2 x`` the voxel's residual
        variance).
        """
        spread = (self.scale[:, None] * self.vecs) ** 2 @ (
            self.s2 / (self.s2 + self.alpha) ** 2)
        floor = spread.mean() * self.residual_var.mean()
        energy = np.zeros(spread.size)
        v = self.xty.shape[1]
        for c in range(0, v, VOXEL_BLOCK):
            block = np.maximum(self.coef(c, c + VOXEL_BLOCK), 0).astype(float)
            var = np.outer(spread, self.residual_var[c:c + VOXEL_BLOCK]) + floor
            energy += (block**2 / np.maximum(var, 1e-300)).sum(axis=1)
        return energy / v
