"""What the two row kernels (numba_ln/cuda/_held.py, _streamed.py) share: their memory
helpers and the size of their shared-memory reduction buffer."""
from ._vector import row_io, scalar_io

FULL_MASK = 0xFFFFFFFF


def kernel_io(v):
    """The memory helpers of configuration v (numba_ln/cuda/_vector.py): row segments of x, r,
    weight/bias (work dtype) and y/s, single elements of x and r, statistics."""
    load_x = row_io(v.x, v.vec)[0]
    load_r = row_io(v.r, v.vec)[0]
    load_p = row_io(v.acc, v.vec)[0]
    store_y = row_io(v.out, v.vec)[1]
    get_x = scalar_io(v.x)[0]
    get_r = scalar_io(v.r)[0]
    put_st = scalar_io(v.acc)[1]
    return load_x, load_r, load_p, store_y, get_x, get_r, put_st


def shared_size(v):
    """Shared-memory words for the row reduction (see numba_ln/cuda/_held.py)."""
    if v.shuffle:
        return max(1, v.groups * (v.threads // 32))
    return v.threads * v.groups
