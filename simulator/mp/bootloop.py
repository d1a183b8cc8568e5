# What the chip does with its program: boot, run main.py, and handle the ways it stops —
# deep sleep (RAM gone, RTC memory and flash kept), resets, the watchdog, power cuts (only
# flash kept). Shared by the CPython engine and the WASI runner: `program` provides reset()
# (forget the firmware modules: RAM is gone) and run_main() (run main.py from flash).
import simboard


def run(board, program, until_us):
    board.end_at(until_us)
    try:
        _run(board, program, until_us)
    except simboard.SimulationEnd:
        pass


def _run(board, program, until_us):
    cause = simboard.PWRON_RESET
    pending = None  # (state, microseconds) the board spends before the next boot
    while board.clock.now_us < until_us:
        try:
            if pending is not None:
                state, span = pending
                pending = None
                board.state = state
                board.sta_ip = None
                left = until_us - board.clock.now_us
                board.advance(span if 0 <= span <= left else left, state)
                if state == simboard.DEEP_SLEEP:
                    board.wake_reason = simboard.TIMER_WAKE
            program.reset()
            board.boot(cause)
            program.run_main()
            # main.py returned: the board sits at the REPL until something resets it.
            pending = (simboard.ACTIVE, -1)
            cause = simboard.SOFT_RESET
        except simboard.DeepSleep as e:
            pending = (simboard.DEEP_SLEEP, e.ms * 1000 if e.ms > 0 else -1)
            cause = simboard.DEEPSLEEP_RESET
        except simboard.PowerCut as e:
            pending = (simboard.OFF, e.ms * 1000)
            cause = simboard.PWRON_RESET
        except simboard.Restart as e:
            cause = e.cause
        except simboard.SimulationEnd:
            raise
        except Exception as e:
            # An uncaught error ends main.py; the REPL prints it and waits (the watchdog,
            # if the firmware started it, resets the board).
            board.print("Traceback: %s: %s" % (type(e).__name__, e))
            program.crashed(e)
            pending = (simboard.ACTIVE, -1)
            cause = simboard.SOFT_RESET
