"""Helpers shared by the tests: plain modules and pytest plugins, never test modules.

``tests/conftest.py`` loads the fixture plugins here; a test module imports the
plain helpers (``from tests.support.waiting import wait_until``). No test module
imports another test module.
"""
