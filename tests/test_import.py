import femur


def test_import_order_and_version():
    import sys

    assert "mpi4py.MPI" in sys.modules
    assert femur.__version__.count(".") == 2
