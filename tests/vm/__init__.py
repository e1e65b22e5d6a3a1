"""QEMU VM harness for real-kernel IPVS tests (see docs/vm.md)."""
