"""Throwaway qemu VMs for the lab: a Debian kernel, a busybox initramfs, a TCG boot with parsed results.

`kernel.fetch_kernel()` -> `initramfs.build_initramfs()` -> `qemu.run_vm()`. Everything is cached under
`cache.cache_root()` (env SANLAB_CACHE, default ~/.cache/sanlab).
"""
