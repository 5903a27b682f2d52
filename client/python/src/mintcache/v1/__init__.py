"""The generated protobuf messages (``cache_pb2``) and gRPC stubs (``cache_pb2_grpc``) of
package ``mintcache.v1``, made from ``proto/`` by ``client/python/gen-stubs.sh``: never edit
them by hand. For anything the typed clients do not cover."""
