"""A stand-in for the embedded LLM server in the middle of a generation: it does not stop on SIGTERM
(llama.cpp's server first finishes the request in flight), only on SIGKILL."""

import runpy
import signal
import sys

signal.signal(signal.SIGTERM, signal.SIG_IGN)
sys.argv = ["http.server", *sys.argv[1:]]
runpy.run_module("http.server", run_name="__main__", alter_sys=True)
