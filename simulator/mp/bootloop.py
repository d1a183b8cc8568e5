# What the chip does with its program: boot, run main.py, and handle the ways it stops —
# deep sleep (RAM gone, RTC memory and flash kept), resets, the watchdog, power cuts (only
# flash kept). Shared by the CPython engine and the WASI runner: `program` provides reset()
# (forget the firmware modules: RAM is gone), run_main() (run main.py from flash) and
# crashed(exc). One step() is one boot; the WASI runner returns to its top level between
# steps (the only place its garbage collector may run, see wasiboot.py).
import simboard


class BootLoop:
    def __init__(self, board, program, until_us):
        self.board = board
        self.program = program
        self.until_us = until_us
        self.cause = simboard.PWRON_RESET
        self.pending = None  # (state, microseconds) the board spends before the next boot
        self.done = False
        board.end_at(until_us)

    def step(self):
        """Run the next boot (after the sleep or outage before it). False when time is up."""
        if self.done or self.board.clock.now_us >= self.until_us:
            self.done = True
            return False
        try:
            self._boot()
        except simboard.SimulationEnd:
            self.done = True
        return not self.done

    def run(self):
        while self.step():
            pass

    def _boot(self):
        board = self.board
        program = self.program
        try:
            if self.pending is not None:
                state, span = self.pending
                self.pending = None
                board.state = state
                board.sta_ip = None
                left = self.until_us - board.clock.now_us
                board.advance(span if 0 <= span <= left else left, state)
                if state == simboard.DEEP_SLEEP:
                    board.wake_reason = simboard.TIMER_WAKE
            program.reset()
            board.boot(self.cause)
            program.run_main()
            # main.py returned: the board sits at the REPL until something resets it.
            self.pending = (simboard.ACTIVE, -1)
            self.cause = simboard.SOFT_RESET
        except simboard.DeepSleep as e:
            self.pending = (simboard.DEEP_SLEEP, e.ms * 1000 if e.ms > 0 else -1)
            self.cause = simboard.DEEPSLEEP_RESET
        except simboard.PowerCut as e:
            self.pending = (simboard.OFF, e.ms * 1000)
            self.cause = simboard.PWRON_RESET
        except simboard.Restart as e:
            self.cause = e.cause
        except simboard.SimulationEnd:
            raise
        except Exception as e:
            # An uncaught error ends main.py; the REPL prints it and waits (the watchdog,
            # if the firmware started it, resets the board).
            board.print("Traceback: %s: %s" % (type(e).__name__, e))
            program.crashed(e)
            self.pending = (simboard.ACTIVE, -1)
            self.cause = simboard.SOFT_RESET


def run(board, program, until_us):
    BootLoop(board, program, until_us).run()
