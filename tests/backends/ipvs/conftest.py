"""The VM fixtures (tests/vm/conftest.py) for this backend's real-kernel tests."""

from tests.vm.conftest import ipvs_vm, vm_image  # noqa: F401 - pytest finds fixtures by name
