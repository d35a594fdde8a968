"""What a synapse of the SNN graph computes, written once: applied to a batch with torch, and a
convolution as the sparse matrix the lowering, the resource estimate and the Lava model use."""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse

from spikeport.toolchain.ir.snn import ConvSynapse, Synapse


def apply_synapse(syn: Synapse, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x`` is (batch, *syn.in_shape); the result is (batch, *syn.out_shape). ``weight`` is the
    synapse's weight as a tensor (a sparse CSR tensor for a :class:`SparseSynapse`)."""
    if isinstance(syn, ConvSynapse):
        return F.conv2d(x, weight, None, syn.stride, syn.padding, syn.dilation, syn.groups)
    if weight.layout == torch.sparse_csr:
        return (weight @ x.reshape(len(x), -1).T).T.reshape(len(x), *syn.out_shape)
    return F.linear(x.reshape(len(x), -1), weight).reshape(len(x), *syn.out_shape)


def weight_tensor(w, dtype: torch.dtype, device: str | torch.device = "cpu") -> torch.Tensor:
    """A synapse's weight (numpy array or scipy sparse matrix) as a tensor: CSR stays CSR."""
    if sparse.issparse(w):
        w = sparse.csr_matrix(w)
        with warnings.catch_warnings():  # torch calls CSR support "beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(torch.as_tensor(w.indptr, dtype=torch.int64),
                                           torch.as_tensor(w.indices, dtype=torch.int64),
                                           torch.as_tensor(w.data, dtype=dtype), w.shape, device=device)
    return torch.as_tensor(np.asarray(w), dtype=dtype, device=device)


def conv_as_matrix(syn: ConvSynapse, weight: np.ndarray) -> sparse.csr_matrix:
    """The convolution as a sparse (n_out, n_in) matrix on flattened (C, H, W) vectors."""
    co, cig, kh, kw = weight.shape
    ci, h, w = syn.in_shape
    _, oh, ow = syn.out_shape
    per_out = co // syn.groups
    oc, oy, ox = np.meshgrid(np.arange(co), np.arange(oh), np.arange(ow), indexing="ij")
    oc, oy, ox = oc.ravel(), oy.ravel(), ox.ravel()
    rows, cols, vals = [], [], []
    for c in range(cig):
        for i in range(kh):
            for j in range(kw):
                iy = oy * syn.stride[0] - syn.padding[0] + i * syn.dilation[0]
                ix = ox * syn.stride[1] - syn.padding[1] + j * syn.dilation[1]
                icn = (oc // per_out) * cig + c
                ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
                val = weight[oc, c, i, j]
                ok &= val != 0
                rows.append(((oc * oh + oy) * ow + ox)[ok])
                cols.append(((icn * h + iy) * w + ix)[ok])
                vals.append(val[ok])
    n_out, n_in = co * oh * ow, ci * h * w
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n_out, n_in))
