"""Quantize a float SNN to integers under a target profile.

Per population l the quantizer picks a membrane unit ``u_l`` (the float value of one integer step
of the membrane):

* IF layers: ``u_l = theta_l / 2**k_l``, so the integer threshold is exactly ``2**k_l`` and the
  initial potential exactly ``2**(k_l-1)``; a power of two is also what the soft-reset
  self-connection (an inhibitory 8-bit weight with an exponent) can represent exactly. ``k_l`` is
  the largest value for which the membrane excursion seen on calibration data at T steps, times
  the profile's margin, stays inside the head-room, and for which every incoming weight fits the
  8-bit mantissa with an exponent no larger than the profile allows.
* The readout: ``u_R`` is the smallest unit for which the summed logits over T steps, times the
  margin, stay inside the head-room.

Weights become ``mantissa * 2**exp`` in membrane units (mantissa in [-128, 127], one exponent per
projection); biases are rounded to membrane units. The analog input projection stays float: the
host rounds ``W x`` to the first layer's unit once per sample (:func:`reference.encode`).

Impossible requests raise :class:`QuantizationError` naming the layer and the value; risks (clipped
weights, a worst case beyond the synaptic width) are reported in ``meta["quantization"]``, and every
runner counts the overflow that really happens.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import sparse

from spikeport.toolchain.errors import QuantizationError
from spikeport.toolchain.hardware.profiles import TargetProfile, get_profile
from spikeport.toolchain.ir.snn import INPUT, Population, Projection, SNNGraph
from spikeport.toolchain.oracle.reference import run_reference


def _weight_exponent(w_units: np.ndarray, profile: TargetProfile) -> int:
    """Smallest exponent e >= 0 such that |w| / 2**e fits the signed mantissa."""
    peak = float(np.abs(w_units).max()) if w_units.size else 0.0
    if peak <= profile.weight_max:
        return 0
    return math.ceil(math.log2(peak / profile.weight_max) - 1e-12)


def _values(w) -> np.ndarray:
    """The weights that exist: a dense array's entries, a sparse matrix's stored ones."""
    return w.data if sparse.issparse(w) else np.asarray(w)


def _quantize_projection(pr: Projection, unit: float, profile: TargetProfile) -> tuple[Projection, dict]:
    w = _values(pr.synapse.weight)
    w_units = w / unit
    e = _weight_exponent(w_units, profile)
    scaled = w_units / (2.0 ** e)
    mant = np.rint(scaled)
    clipped = int(np.sum((mant > profile.weight_max) | (mant < profile.weight_min)))
    mant = np.clip(mant, profile.weight_min, profile.weight_max).astype(np.int64)
    err = (mant - scaled) * (2.0 ** e) * unit  # back in float weight units
    if sparse.issparse(pr.synapse.weight):
        m = sparse.csr_matrix(pr.synapse.weight, dtype=np.int64, copy=True)
        m.data = mant
        m.eliminate_zeros()
        syn = dataclasses.replace(pr.synapse, weight=m)
    else:
        syn = dataclasses.replace(pr.synapse, weight=mant)
    info = {
        "source": pr.source, "weight_exp": e, "clipped": clipped, "weights": int(mant.size),
        "mantissa_peak": int(np.abs(mant).max()) if mant.size else 0,
        "max_abs_error": float(np.abs(err).max()) if err.size else 0.0,
        "rel_rms_error": float(np.sqrt(np.mean(err ** 2)) / (np.sqrt(np.mean(w ** 2)) + 1e-30)) if w.size else 0.0,
    }
    return Projection(pr.source, syn, weight_exp=e), info


def _worst_synaptic_input(pop: Population, projections: list[Projection]) -> int:
    """Per-step synaptic input if every presynaptic neuron fired at once (a bound, rarely reached).

    Above the profile's synaptic limit Lava's Conv would wrap its output; the calibrated head-room
    already keeps real per-step inputs far below it, so this is reported as a risk, not refused.
    """
    worst = np.zeros(pop.size)
    for pr in projections:
        if pr.source == INPUT:
            continue
        w = abs(pr.effective_weight())
        if sparse.issparse(w):
            worst = worst + np.asarray(w.sum(1)).ravel()
        elif w.ndim == 4:  # conv: worst case per output channel
            per_channel = w.reshape(w.shape[0], -1).sum(1)
            worst = worst + np.repeat(per_channel, pop.size // w.shape[0])
        else:
            worst = worst + w.sum(1)
    return int(worst.max()) if worst.size else 0


def quantize(snn: SNNGraph, calib_x: np.ndarray, T: int, profile: str | TargetProfile = "loihi2",
             device: str = "cpu") -> SNNGraph:
    """Integer SNN for ``T``-step inference, with ranges calibrated on ``calib_x`` (training data);
    ``device`` runs the calibration."""
    if snn.integer:
        raise QuantizationError("the graph is already integer")
    profile = get_profile(profile)
    calib = run_reference(snn, calib_x, T, device=device)
    peaks = calib.meta["peak"]
    target = profile.headroom / profile.margin
    units: dict[str, float] = {}
    pops: list[Population] = []
    report: list[dict] = []
    for p in snn.populations:
        if p.kind == "maxpool":  # no weights, no membrane: its spikes weigh what its source's do
            pops.append(Population(p.name, p.shape, p.kind, 0, 0, np.zeros(p.shape, dtype=np.int64), list(p.inputs),
                                   p.origin))
            continue
        peak = float(peaks[p.name])
        incoming = [pr for pr in p.inputs if pr.source != INPUT]
        wmax = max((float(np.abs(_values(pr.synapse.weight)).max(initial=0.0)) for pr in incoming), default=0.0)
        limit_exp = profile.weight_exp_max
        if p.kind == "if":
            # threshold 2**k: head-room bound, weight-exponent bound, vth width bound
            k_head = math.floor(math.log2(target * p.threshold / peak)) if peak > 0 else profile.threshold_exp_max
            k_w = profile.threshold_exp_max
            if wmax > 0:
                # need wmax * 2**k / theta <= weight_max * 2**limit_exp
                k_w = math.floor(math.log2(profile.weight_max * 2 ** limit_exp * p.threshold / wmax))
            k = min(k_head, k_w, profile.threshold_exp_max)
            if k < 3:
                raise QuantizationError(
                    f"layer {p.name!r} cannot fit {profile.name} at T={T}: an integer threshold of at least "
                    f"2**3 is needed, but the membrane range allows at most 2**{k_head} (peak |U| = "
                    f"{peak / p.threshold:.3g} thresholds) and the weight range at most 2**{k_w} (largest "
                    f"weight {wmax / p.threshold:.3g} thresholds)")
            unit = p.threshold / 2 ** k
            threshold, v_init = 1 << k, round(p.v_init / unit)  # theta/2 -> exactly 2**(k-1)
        else:
            unit = peak / target if peak > 0 else 1.0
            if wmax > 0:
                unit = max(unit, wmax / (profile.weight_max * 2 ** limit_exp))
            threshold, v_init, k = 0, 0, None
        units[p.name] = unit
        projections, infos = [], []
        for pr in p.inputs:
            if pr.source == INPUT:
                projections.append(Projection(INPUT, pr.synapse, unit=unit))
                infos.append({"source": INPUT, "analog": True})
            else:
                q, info = _quantize_projection(pr, unit, profile)
                projections.append(q)
                infos.append(info)
        bias = np.rint(p.bias / unit).astype(np.int64)
        time_bias = None if p.time_bias is None else np.rint(p.time_bias / unit).astype(np.int64)
        qp = Population(p.name, p.shape, p.kind, threshold, v_init, bias, projections, p.origin, time_bias)
        syn_peak = _worst_synaptic_input(qp, projections)
        pops.append(qp)
        headroom_used = peak / unit / profile.headroom
        report.append({
            "population": p.name, "kind": p.kind, "shape": list(p.shape), "origin": p.origin,
            "unit": unit, "threshold_exp": k, "threshold_float": p.threshold, "threshold_int": threshold,
            "v_init_int": v_init, "bias_max_abs_int": int(np.abs(bias).max()) if bias.size else 0,
            "bias_max_abs_error": float(np.abs(bias * unit - p.bias).max()) if bias.size else 0.0,
            "calibrated_peak_U": peak / unit, "headroom": profile.headroom, "headroom_used": headroom_used,
            "worst_synaptic_input": syn_peak, "synaptic_wrap_possible": syn_peak > profile.synaptic_limit,
            "projections": infos,
        })
    meta = {**snn.meta, "calibration_samples": len(calib_x), "quantization": report}
    return SNNGraph(snn.input_shape, pops, neuron=snn.neuron, profile=profile, T=T, meta=meta)
