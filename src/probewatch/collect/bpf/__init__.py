"""The eBPF collection backend: libbpf through ctypes, CO-RE programs, built objects."""
