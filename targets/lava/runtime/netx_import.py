"""Import lava-dl's netx where torch is missing (Lava environment only; no spikeport, no torch).

lava-dl's netx needs torch only through imports: the CUBA networks it builds from ``.net`` files
are stock Lava processes. spikeport's Lava environment has no torch (it would cost gigabytes), so
empty stand-ins are registered for the modules netx imports but never uses on that path. With
torch installed (a usual lava-dl environment) this is a plain ``from lava.lib.dl import netx``.
"""

import sys
import types


def import_netx():
    def stub(name, **attrs):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules.setdefault(name, module)
        return sys.modules[name]

    try:
        import torch  # noqa: F401
    except ImportError:
        stub("torch", Tensor=object, tensor=object, nn=stub("torch.nn", Module=object))
        stub("lava.lib.dl.slayer")
        stub("lava.lib.dl.slayer.neuron")
        stub("lava.lib.dl.slayer.neuron.rf", neuron_params=lambda *a, **k: {})
    from lava.lib.dl import netx
    return netx
