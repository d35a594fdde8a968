"""Target profiles: one description of a target, passed explicitly to whatever needs it.

A :class:`TargetProfile` holds three things about a chip, each with where it comes from:

* its arithmetic as Lava models it: the bit widths of weights, membranes and registers, and the
  rules the quantizer, the lowering and every runtime follow (docs/lava-semantics.md);
* its limits (:class:`ChipLimits`): cores, neurons and synaptic memory, which the resource
  estimate (:mod:`~spikeport.toolchain.costs.resources`) checks a lowered network against;
* its energy per operation (:class:`EnergyFigures`), at which :mod:`~spikeport.toolchain.costs.metrics`
  prices the counted work of an inference.

:func:`~spikeport.toolchain.passes.quantize.quantize` chooses the profile; the integer ``SNNGraph`` it
makes and the ``ProcessNet`` lowered from that carry it (``.profile``), and everything downstream
reads it from there. ``loihi2`` is the one profile: Loihi 2 as Lava 0.10 models it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from spikeport.toolchain.errors import SpikeportError


@dataclass(frozen=True)
class EnergyFigures:
    """Published energy per operation, each figure beside its source: what turns counted work
    (:mod:`spikeport.toolchain.costs.metrics`) into an energy estimate, and what it is compared with."""

    chip: str  # whose figures these are
    source: str
    synop_pJ: float  # one message reaching one target (a synaptic operation)
    neuron_update_pJ: float  # one neuron updated at one step
    graded: str  # how a graded spike is charged, and why
    host_mac_pJ: float  # a float multiply-add on a CPU/GPU: the analog input layer, and the ANN compared with
    host_device: str
    host_source: str

    def to_dict(self) -> dict:
        """The layout reports write (``energy_sources`` in quantization.json and lowlat.json)."""
        return {"loihi": {"chip": self.chip, "source": self.source, "synop_pJ": self.synop_pJ,
                          "neuron_update_pJ": self.neuron_update_pJ},
                "mac": {"device": self.host_device, "source": self.host_source, "mac_pJ": self.host_mac_pJ},
                "graded": {"assumption": self.graded}}


LOIHI_ENERGY = EnergyFigures(
    chip="Intel Loihi (first generation, 14 nm); Intel has not published per-operation energies for Loihi 2",
    source="M. Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', IEEE Micro "
           "38(1), 2018, Table 2 (minimum energy per synaptic spike operation; per active neuron update)",
    synop_pJ=23.6,
    neuron_update_pJ=52.0,
    graded="a graded spike (Loihi 2's integer payload) is charged as one message: one synaptic operation per "
           "target, as a binary spike; Intel publishes no energy for graded spikes, so if a payload costs more "
           "this underestimates (the payload sum is reported beside it)",
    host_mac_pJ=4.6,
    host_device="32-bit floating-point multiply-add in 45 nm CMOS (a GPU/CPU datapath, memory traffic excluded)",
    host_source="M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014: fp32 "
                "multiply 3.7 pJ + fp32 add 0.9 pJ",
)


@dataclass(frozen=True)
class ChipLimits:
    """What one chip holds, as its maker publishes it, for the resource estimate."""

    name: str
    source: str
    cores_per_chip: int
    neurons_per_core: int
    synaptic_memory_bits: int  # per neuro core
    neurons_per_chip: int
    synapses_per_chip: int
    sparse_index_bits: int = 16  # assumption: one index per stored synapse of a sparse connection
    delay_bits: int = 6  # assumption: Lava's DelaySparse delays are below 64


LOIHI2_LIMITS = ChipLimits(
    name="Loihi 2",
    source="Intel Labs, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', Technology Brief, "
           "2021: 128 neuro cores per chip, up to 8,192 neurons per core, 128 KB of synaptic memory per core "
           "(flexibly partitioned), up to 1 million neurons and 120 million synapses per chip",
    cores_per_chip=128,
    neurons_per_core=8192,
    synaptic_memory_bits=128 * 1024 * 8,
    neurons_per_chip=1_000_000,
    synapses_per_chip=120_000_000,
)


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    weight_bits: int  # signed mantissa bits of a synaptic weight (sign included)
    weight_exp_max: int  # largest per-projection weight exponent
    act_shift: int  # synaptic input enters the current register as a << act_shift
    membrane_bits: int  # width of u and v
    threshold_exp_max: int  # thresholds are 2**k with k <= this (17-bit vth mantissa)
    headroom: int  # |U| (membrane minus initial potential, weight units) kept at or below this
    quench: int  # current that silences a layer in its flush step between streamed samples
    margin: float  # the quantizer keeps calibrated ranges this many times inside the head-room
    limits: ChipLimits  # what one chip holds
    energy: EnergyFigures  # what an operation costs
    decay_bits: int = 12  # du and dv are fractions of 2**decay_bits
    word_bits: int = 32  # Lava's CPU models keep u, v and synaptic input in int32: beyond it sums wrap

    @property
    def decay_unit(self) -> int:
        """``dv = decay_unit`` keeps nothing of v from the step before; ``du = -1`` keeps all of u."""
        return 1 << self.decay_bits

    @property
    def u_limit(self) -> int:
        """u folds (wraps) beyond +-2**(membrane_bits - 1); in weight units that is ``u_limit``."""
        return 1 << (self.membrane_bits - 1 - self.act_shift)

    @property
    def weight_max(self) -> int:
        return (1 << (self.weight_bits - 1)) - 1

    @property
    def weight_min(self) -> int:
        return -(1 << (self.weight_bits - 1))

    @property
    def synaptic_limit(self) -> int:
        """Largest per-step synaptic input (Lava's Conv wraps its output at the membrane width)."""
        return (1 << (self.membrane_bits - 1)) - 1

    @property
    def v_max(self) -> int:
        """v saturates at +-v_max."""
        return (1 << (self.membrane_bits - 1)) - 1

    def to_dict(self) -> dict:
        return asdict(self)


LOIHI2 = TargetProfile(
    name="loihi2",
    description="Loihi 2 as modelled by Lava 0.10 fixed_pt: 8-bit signed weight mantissas with a "
                "per-projection exponent, 24-bit u and v, synaptic input scaled by 2**6",
    weight_bits=8,
    weight_exp_max=7,
    act_shift=6,
    membrane_bits=24,
    threshold_exp_max=16,
    # u wraps beyond 2**23 = 2**17 weight units; keep |U| below 2**16 so that the 2**16 quench in
    # the flush step neither lets a neuron fire nor wraps u (docs/design.md, section 3)
    headroom=(1 << 16) - 1,
    quench=1 << 16,
    margin=1.25,
    limits=LOIHI2_LIMITS,
    energy=LOIHI_ENERGY,  # Intel publishes no per-operation energy for Loihi 2: Loihi's, said so in them
)

PROFILES: dict[str, TargetProfile] = {LOIHI2.name: LOIHI2}


def get_profile(name: str | TargetProfile) -> TargetProfile:
    if isinstance(name, TargetProfile):
        return name
    if name not in PROFILES:
        raise SpikeportError(f"unknown target profile {name!r}; known: {sorted(PROFILES)}")
    return PROFILES[name]
