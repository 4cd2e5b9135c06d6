package proxy

// answerUnavailable is what a plain HTTP connection refused for want of
// file descriptors receives. It is written straight to the socket: there is
// no descriptor to spare for anything else.
const answerUnavailable = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\nRetry-After: 1\r\nContent-Length: 36\r\n\r\nstreamgate: out of file descriptors\n"
