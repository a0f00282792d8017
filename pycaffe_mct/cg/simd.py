"""Sixteen float32 lanes as a numba value, for kernels that must hold a register block.

numba compiles a loop to what LLVM makes of it, and LLVM keeps an
accumulator in a vector register only when it can see it is one: a GEMM
whose partial sums sit in an array is bound by loads and stores of that array
(the numba GEMMs tried before ran at 7-10 GFLOP/s).  ``Vec16`` is an LLVM
``<16 x float>`` under a numba type, so a kernel's local ``Vec16`` variables
are SSA values that live in registers (one AVX-512 register, or two AVX2
ones), and ``fma`` is LLVM's fused multiply-add on all lanes.  Seven
operations, each one LLVM instruction or a few: ``zeros``, ``load``,
``load_halves`` (two runs of 8 floats), ``store``, ``splat`` (one float in every
lane), ``fma`` and ``total`` (the lanes' sum).

``load``/``store`` take a flat float32 array and an element offset; they check
no bounds (the kernels that use them guarantee 16 floats are there).
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 16
_VECTOR = ir.VectorType(ir.FloatType(), LANES)


class Vec16Type(types.Type):
    def __init__(self):
        super().__init__(name="Vec16")


Vec16 = Vec16Type()


@register_model(Vec16Type)
class _Vec16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _lanes_at(context, builder, array_type, array, offset):
    """A <16 x float>* to element ``offset`` of a flat array."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [offset]), _VECTOR.as_pointer())


@intrinsic
def zeros(typingctx):
    def codegen(context, builder, signature, args):
        return ir.Constant(_VECTOR, [0.0] * LANES)
    return Vec16(), codegen


@intrinsic
def load(typingctx, array, offset):
    """array[offset:offset + 16] as lanes."""
    def codegen(context, builder, signature, args):
        return builder.load(_lanes_at(context, builder, signature.args[0], *args), align=4)
    return Vec16(array, offset), codegen


@intrinsic
def store(typingctx, array, offset, lanes):
    """array[offset:offset + 16] = lanes."""
    def codegen(context, builder, signature, args):
        builder.store(args[2], _lanes_at(context, builder, signature.args[0], *args[:2]),
                      align=4)
        return context.get_dummy_value()
    return types.void(array, offset, Vec16), codegen


@intrinsic
def splat(typingctx, value):
    """``value`` (float32) in all 16 lanes."""
    def codegen(context, builder, signature, args):
        first = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), args[0],
                                       ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(first, ir.Constant(_VECTOR, ir.Undefined),
                                      ir.Constant(ir.VectorType(ir.IntType(32), LANES),
                                                  [0] * LANES))
    return Vec16(types.float32), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c lane by lane, rounded once."""
    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VECTOR, [_VECTOR] * 3), "llvm.fma.v16f32")
        return builder.call(function, args)
    return Vec16(Vec16, Vec16, Vec16), codegen


@intrinsic
def total(typingctx, lanes):
    """The sum of the 16 lanes (as a tree of adds, the same tree every call)."""
    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.FloatType(), [ir.FloatType(), _VECTOR]),
            "llvm.vector.reduce.fadd.v16f32")
        return builder.call(function, [ir.Constant(ir.FloatType(), 0.0), args[0]],
                            fastmath=("reassoc",))
    return types.float32(Vec16), codegen


_HALF = ir.VectorType(ir.FloatType(), LANES // 2)


@intrinsic
def load_halves(typingctx, array, low, high):
    """array[low:low + 8] in the low 8 lanes and array[high:high + 8] in the high 8: 16
    pixels of an image that lie on two rows."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        halves = [builder.load(builder.bitcast(builder.gep(data, [at]), _HALF.as_pointer()),
                               align=4) for at in args[1:]]
        return builder.shuffle_vector(*halves, ir.Constant(ir.VectorType(ir.IntType(32), LANES),
                                                           list(range(LANES))))
    return Vec16(array, low, high), codegen
