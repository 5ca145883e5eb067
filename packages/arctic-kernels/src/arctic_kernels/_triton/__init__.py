"""Triton kernels. Imported only after `choose_backend` has checked that triton imports."""
