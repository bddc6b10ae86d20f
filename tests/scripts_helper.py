"""Run the user's entry points as a user would: their `main`, with exit code and output."""

import contextlib
import importlib.util
import io
import logging
import os
import socket
import subprocess
import sys
import traceback
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Scripts run inside the test process by default: each is `main(argv) -> int` behind
# `sys.exit(main())`, and a fresh interpreter per call spent seconds importing jax, flax,
# orbax and sklearn (127 calls, most of the suite's time on 2 cores). The exit code, stdout
# and stderr (errors, warnings, progress) come back as a subprocess's would. Tests that need
# a real process (a kill, a second host, a fresh XLA flag) start one themselves; set
# MULTIMODAL_TEST_SUBPROCESS=1 to run every script call as a subprocess as well.
IN_PROCESS = os.environ.get("MULTIMODAL_TEST_SUBPROCESS", "") not in ("1", "true")
_SCRIPTS = {}


def run_script(name, *args, check=True, env=None, timeout=600):
    if IN_PROCESS and env is None:
        out = _run_in_process(name, [str(a) for a in args])
    else:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", name), *args],
                             capture_output=True, text=True, cwd=ROOT, env=full_env,
                             timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{name} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def _script(name):
    if name not in _SCRIPTS:
        path = os.path.join(ROOT, "scripts", name)
        spec = importlib.util.spec_from_file_location(f"scripts_{name[:-3]}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SCRIPTS[name] = module
    return _SCRIPTS[name]


def _fresh_interpreter_warnings():
    """Python's own filters, not pytest's: each warning once per place, deprecations hidden."""
    warnings.resetwarnings()
    # to the captured stderr, not to pytest's warning log (which the test around us records to)
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: \
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                     ResourceWarning):
        warnings.filterwarnings("ignore", category=category)


def _run_in_process(name, args):
    from PIL import Image

    stdout, stderr = io.StringIO(), io.StringIO()
    log = logging.StreamHandler(stderr)  # what logging's last resort prints in a fresh process
    log.setLevel(logging.WARNING)
    saved = sys.argv, Image.MAX_IMAGE_PIXELS  # predict.py and serve.py raise Pillow's limit
    sys.argv = [os.path.join(ROOT, "scripts", name), *args]  # argparse's usage line: the name
    logging.getLogger().addHandler(log)
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
            contextlib.chdir(ROOT), warnings.catch_warnings():
        _fresh_interpreter_warnings()
        try:
            raise SystemExit(_script(name).main(args))  # then sys.exit's rules, as the script
        except SystemExit as exc:
            code = exc.code
            if code is not None and not isinstance(code, int):
                print(code, file=sys.stderr)  # sys.exit("text") / a non-int: printed, exit 1
                code = 1
        except Exception:  # a bug: the traceback a crashed interpreter would print
            traceback.print_exc()
            code = 1
        finally:
            logging.getLogger().removeHandler(log)
            sys.argv, Image.MAX_IMAGE_PIXELS = saved
    return subprocess.CompletedProcess([name, *args], code or 0, stdout.getvalue(),
                                       stderr.getvalue())


def refused(out, *needles):
    """Exit 2 with exactly one `error:` line (the last line), no traceback; return it."""
    assert out.returncode == 2, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], out.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
