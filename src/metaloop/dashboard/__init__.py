"""The web dashboard: watch a store's experiments live, steer them, launch new ones.

``metaloop dashboard`` serves a page (our own HTML/JS/SVG under ``static/``, no CDN) and a
JSON API under ``/api/`` (:mod:`metaloop.dashboard.server`).  Everything it shows is read from
the store (:mod:`metaloop.dashboard.reader`, :mod:`metaloop.dashboard.views`); steering
commands are written into the store through :mod:`metaloop.steering`.  ``metaloop report``
(:mod:`metaloop.dashboard.report`) reuses the same views and chart code for one self-contained file.
The web server (Starlette + uvicorn, ``pip install 'metaloop[dashboard]'``) is imported only
by the server module.
"""
