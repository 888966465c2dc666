import GRPCCore
import KeelGRPC

/// `grpc.health.v1.Health`: SERVING, as etcd 3.4 answers (its liveness is `/health`).
struct HealthService: Grpc_Health_V1_Health.ServiceProtocol {
    func check(request: ServerRequest<Grpc_Health_V1_HealthCheckRequest>, context: ServerContext) async throws -> ServerResponse<Grpc_Health_V1_HealthCheckResponse> {
        var response = Grpc_Health_V1_HealthCheckResponse()
        response.status = .serving
        return ServerResponse(message: response)
    }

    func watch(request: ServerRequest<Grpc_Health_V1_HealthCheckRequest>, context: ServerContext) async throws -> StreamingServerResponse<Grpc_Health_V1_HealthCheckResponse> {
        StreamingServerResponse { writer in
            var response = Grpc_Health_V1_HealthCheckResponse()
            response.status = .serving
            try await writer.write(response)
            return [:]
        }
    }
}
