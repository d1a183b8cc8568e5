# Fake of the `micropython` module: const() and the heap/scheduling helpers.
_board = None


def _attach(board):
    global _board
    _board = board


def const(expr):
    return expr


def opt_level(level=None):
    return 0


def alloc_emergency_exception_buf(size):
    pass


def schedule(func, arg):
    # Soft IRQ: runs at the next Python-level point, as the port does.
    _board.irq_queue.append((func, arg))


def heap_lock():
    return 0


def heap_unlock():
    return 0


def mem_info(verbose=None):
    pass


def stack_use():
    return 0


def kbd_intr(chr):
    pass
