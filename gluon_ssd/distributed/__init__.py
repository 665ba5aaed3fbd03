"""Distributed training, two jobs in two modules (import the one you need):

* :mod:`gluon_ssd.distributed.cluster`: inside a training process, joining the job
  (``--kvstore``): rank, gradient exchange, equal data shards, averaging across workers.
* :mod:`gluon_ssd.distributed.launch`: the ``gluon-ssd launch`` process launcher and supervisor
  (scheduler, servers, workers); it imports no MXNet.
"""
