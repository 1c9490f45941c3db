from setuptools import setup

# All metadata lives in setup.cfg; this file lets older pip versions install in editable mode.
setup()
