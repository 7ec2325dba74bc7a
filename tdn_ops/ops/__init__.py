"""One module per fused operator: checks, fake kernels, autograd and the public function."""
