# TLS reads and writes from compiled code on ssl's own SSL object (tls_io.pyx says when and why).

cdef object ssl_object(object sock)
cdef object tls_recv(object sslobj)
cdef Py_ssize_t tls_send(object sslobj, bytes data) except -1
