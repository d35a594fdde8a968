"""Target profiles: the bit widths and limits the quantizer and the lowering respect."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from spikeport.toolchain.errors import SpikeportError


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
)

PROFILES: dict[str, TargetProfile] = {LOIHI2.name: LOIHI2}


def get_profile(name: str | TargetProfile) -> TargetProfile:
    if isinstance(name, TargetProfile):
        return name
    if name not in PROFILES:
        raise SpikeportError(f"unknown target profile {name!r}; known: {sorted(PROFILES)}")
    return PROFILES[name]
