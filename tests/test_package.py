"""``import gluon_ssd`` in environments a practitioner may have: here, one that also has PyTorch 2.

Each case runs in a fresh interpreter, since what is imported first is what is being tested. A
stand-in ``torch`` module of version 2.5.0 plays PyTorch, so no torch install is needed.
"""
import subprocess
import sys

FAKE_TORCH = ("import sys, types; torch = types.ModuleType('torch'); "
              "torch.__version__ = '2.5.0'; sys.modules['torch'] = torch; ")


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


def test_gluoncv_alone_refuses_torch_2():
    # The upstream behaviour the package works around: a RuntimeError at import.
    done = python(FAKE_TORCH + "import gluoncv")
    assert done.returncode != 0 and "Legacy torch==2.5.0" in done.stderr


def test_gluon_ssd_imports_beside_torch_2_and_leaves_torch_in_place():
    done = python(FAKE_TORCH + "import gluon_ssd, gluoncv.data, gluon_ssd.evaluation.run; "
                  "assert sys.modules['torch'] is torch; import torch as again; "
                  "assert again is torch; print('ok')")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_torch_stays_importable_after_gluon_ssd():
    # Without torch imported first, gluon_ssd must not leave "torch" blocked in sys.modules.
    done = python("import sys, gluon_ssd; print('torch' in sys.modules)")
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
