"""The emulated Sunway SW26010 core group (CG): its figures as named parameters.

One CG is a management element (MPE) plus an 8x8 mesh of compute elements
(CPEs), each with a 64 KB local data memory (LDM) filled by DMA from main
memory; CPEs of one mesh row or column exchange registers (``getr``/``getc``).
Every figure below is a field with its source; figures no public source gives
are marked as our choice (see ``docs/reference/sw26010.md``).
"""
from dataclasses import dataclass

KB = 1024


@dataclass(frozen=True)
class CoreGroupSpec:
    """Figures of one core group; the defaults are SW26010's."""

    # 1.45 GHz: Wikipedia "Sunway SW26010".
    clock_hz: float = 1.45e9
    # 8 flops/cycle per CPE: one 256-bit vector FMA per cycle (4 lanes x 2), Wikipedia;
    # single precision uses the same 4-lane vector (floatv4 in swDNN), so SP peak = DP peak.
    flops_per_cycle: int = 8
    # 8x8 mesh of CPEs: Wikipedia, the paper (section 2.2).
    mesh_rows: int = 8
    mesh_cols: int = 8
    # 64 KB data scratchpad per CPE: Wikipedia.
    ldm_bytes: int = 64 * KB
    # What a kernel may plan with: swCaffe's convolution kernels budget 60 KB of the
    # 64 KB (sw_conv_layer_impl.c), leaving room for stack and spills.
    ldm_budget_bytes: int = 60 * KB
    # DMA bandwidth between main memory and the LDMs of one CG, all CPEs together.
    # Not in the stored sources; measured figures quoted in the literature are in the
    # low tens of GB/s per CG.  Our choice: 22 GB/s.
    dma_bytes_per_s: float = 22e9
    # Start-up cost of one DMA transfer (choice: 1 microsecond, a few hundred cycles);
    # it is paid once per pipeline fill since double buffering hides the rest.
    dma_latency_s: float = 1e-6
    # Register communication: one 256-bit register per cycle per CPE on the row/column
    # buses (our choice, from the vector width), with a latency of 11 cycles (choice).
    reg_comm_bytes_per_cycle: int = 32
    reg_comm_latency_cycles: int = 11
    # Bytes per element of the emulated kernels (float32).
    element_bytes: int = 4

    @property
    def cpes(self):
        return self.mesh_rows * self.mesh_cols

    @property
    def cpe_flops_per_s(self):
        """Peak of one CPE: 11.6 GFLOP/s with the defaults."""
        return self.clock_hz * self.flops_per_cycle

    @property
    def peak_flops_per_s(self):
        """Peak of the 64 CPEs: 742 GFLOP/s with the defaults."""
        return self.cpe_flops_per_s * self.cpes

    @property
    def reg_comm_bytes_per_s(self):
        """Register-communication bandwidth into one CPE."""
        return self.reg_comm_bytes_per_cycle * self.clock_hz


SW26010 = CoreGroupSpec()
