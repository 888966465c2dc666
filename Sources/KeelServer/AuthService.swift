import GRPCCore
import KeelGRPC
import KeelMVCC
import KeelProto

/// etcd's Auth service. Changes go through raft (admin only once auth is on, as etcd's
/// `needAdminPermission`); Authenticate checks the password before raft and proposes only the
/// token prefix, so no password enters the WAL; reads are served locally after ReadIndex.
struct AuthService: Etcdserverpb_Auth.ServiceProtocol {
    let core: ServerCore

    /// Proposes an auth change as the caller and returns `response` with a header.
    private func change<R: Sendable>(_ info: AuthInfo?, _ response: R, _ fill: (inout Etcdserverpb_InternalRaftRequest) -> Void,
                                     header: WritableKeyPath<R, Etcdserverpb_ResponseHeader>) async throws -> R {
        try core.requireAdmin(info)
        var proposal = Etcdserverpb_InternalRaftRequest()
        fill(&proposal)
        if let info { proposal.header.username = info.user; proposal.header.authRevision = info.revision }
        _ = try await core.propose(proposal)
        var r = response
        r[keyPath: header] = core.header()
        return r
    }

    func authEnable(request: ServerRequest<Etcdserverpb_AuthEnableRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthEnableResponse> {
        try await core.unary("Auth", "AuthEnable", request) { r, info in
            try await change(info, Etcdserverpb_AuthEnableResponse(), { $0.authEnable = r }, header: \.header)
        }
    }

    func authDisable(request: ServerRequest<Etcdserverpb_AuthDisableRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthDisableResponse> {
        try await core.unary("Auth", "AuthDisable", request) { r, info in
            try await change(info, Etcdserverpb_AuthDisableResponse(), { $0.authDisable = r }, header: \.header)
        }
    }

    func userAdd(request: ServerRequest<Etcdserverpb_AuthUserAddRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthUserAddResponse> {
        try await core.unary("Auth", "UserAdd", request) { r, info in
            try await change(info, Etcdserverpb_AuthUserAddResponse(), { $0.authUserAdd = r }, header: \.header)
        }
    }

    func userDelete(request: ServerRequest<Etcdserverpb_AuthUserDeleteRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthUserDeleteResponse> {
        try await core.unary("Auth", "UserDelete", request) { r, info in
            try await change(info, Etcdserverpb_AuthUserDeleteResponse(), { $0.authUserDelete = r }, header: \.header)
        }
    }

    func userChangePassword(request: ServerRequest<Etcdserverpb_AuthUserChangePasswordRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthUserChangePasswordResponse> {
        try await core.unary("Auth", "UserChangePassword", request) { r, info in
            try await change(info, Etcdserverpb_AuthUserChangePasswordResponse(), { $0.authUserChangePassword = r }, header: \.header)
        }
    }

    func userGrantRole(request: ServerRequest<Etcdserverpb_AuthUserGrantRoleRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthUserGrantRoleResponse> {
        try await core.unary("Auth", "UserGrantRole", request) { r, info in
            try await change(info, Etcdserverpb_AuthUserGrantRoleResponse(), { $0.authUserGrantRole = r }, header: \.header)
        }
    }

    func userRevokeRole(request: ServerRequest<Etcdserverpb_AuthUserRevokeRoleRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthUserRevokeRoleResponse> {
        try await core.unary("Auth", "UserRevokeRole", request) { r, info in
            try await change(info, Etcdserverpb_AuthUserRevokeRoleResponse(), { $0.authUserRevokeRole = r }, header: \.header)
        }
    }

    func roleAdd(request: ServerRequest<Etcdserverpb_AuthRoleAddRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthRoleAddResponse> {
        try await core.unary("Auth", "RoleAdd", request) { r, info in
            try await change(info, Etcdserverpb_AuthRoleAddResponse(), { $0.authRoleAdd = r }, header: \.header)
        }
    }

    func roleDelete(request: ServerRequest<Etcdserverpb_AuthRoleDeleteRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthRoleDeleteResponse> {
        try await core.unary("Auth", "RoleDelete", request) { r, info in
            try await change(info, Etcdserverpb_AuthRoleDeleteResponse(), { $0.authRoleDelete = r }, header: \.header)
        }
    }

    func roleGrantPermission(request: ServerRequest<Etcdserverpb_AuthRoleGrantPermissionRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthRoleGrantPermissionResponse> {
        try await core.unary("Auth", "RoleGrantPermission", request) { r, info in
            try await change(info, Etcdserverpb_AuthRoleGrantPermissionResponse(), { $0.authRoleGrantPermission = r }, header: \.header)
        }
    }

    func roleRevokePermission(request: ServerRequest<Etcdserverpb_AuthRoleRevokePermissionRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthRoleRevokePermissionResponse> {
        try await core.unary("Auth", "RoleRevokePermission", request) { r, info in
            try await change(info, Etcdserverpb_AuthRoleRevokePermissionResponse(), { $0.authRoleRevokePermission = r }, header: \.header)
        }
    }

    func authenticate(request: ServerRequest<Etcdserverpb_AuthenticateRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthenticateResponse> {
        try await core.unary("Auth", "Authenticate", request) { r, _ in
            try core.check { () throws(MVCCError) in try core.kv.checkPassword(r.name, password: r.password) }
            var proposal = Etcdserverpb_InternalRaftRequest()
            proposal.authenticate.name = r.name
            proposal.authenticate.simpleToken = KVStore.tokenPrefix()
            guard case let .authenticated(token) = try await core.propose(proposal) else { throw RPCError(code: .internalError, message: "keel: unexpected apply result") }
            var response = Etcdserverpb_AuthenticateResponse()
            response.token = token
            response.header = core.header()
            return response
        }
    }

    func userGet(request: ServerRequest<Etcdserverpb_AuthUserGetRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthUserGetResponse> {
        try await core.unary("Auth", "UserGet", request) { r, info in
            // As etcd: admins, or a user asking about itself.
            if info?.user != r.name { try core.requireAdmin(info) }
            try await core.linearize()
            var response = Etcdserverpb_AuthUserGetResponse()
            response.roles = try core.kv.userGet(r.name)
            response.header = core.header()
            return response
        }
    }

    func userList(request: ServerRequest<Etcdserverpb_AuthUserListRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthUserListResponse> {
        try await core.unary("Auth", "UserList", request) { _, info in
            try core.requireAdmin(info)
            try await core.linearize()
            var response = Etcdserverpb_AuthUserListResponse()
            response.users = try core.kv.userList()
            response.header = core.header()
            return response
        }
    }

    func roleGet(request: ServerRequest<Etcdserverpb_AuthRoleGetRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthRoleGetResponse> {
        try await core.unary("Auth", "RoleGet", request) { r, info in
            // As etcd: admins, or a user holding the role.
            let holds = info.map { (try? core.kv.userGet($0.user).contains(r.role)) ?? false } ?? false
            if !holds { try core.requireAdmin(info) }
            try await core.linearize()
            var response = Etcdserverpb_AuthRoleGetResponse()
            response.perm = try core.kv.roleGet(r.role)
            response.header = core.header()
            return response
        }
    }

    func roleList(request: ServerRequest<Etcdserverpb_AuthRoleListRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AuthRoleListResponse> {
        try await core.unary("Auth", "RoleList", request) { _, info in
            try core.requireAdmin(info)
            try await core.linearize()
            var response = Etcdserverpb_AuthRoleListResponse()
            response.roles = try core.kv.roleList()
            response.header = core.header()
            return response
        }
    }
}
