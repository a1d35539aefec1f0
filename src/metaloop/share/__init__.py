"""Shareable campaigns: an experiment as an RO-Crate (``metaloop export --format rocrate``),
loaded into another store (``metaloop import``), and experiments of several stores combined
(``metaloop merge``).  See docs/sharing.md."""
