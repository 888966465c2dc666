import GRPCCore
import KeelGRPC
import XCTest

/// The generated stubs carry etcd 3.4's exact method paths and streaming shapes: a client such
/// as etcdctl calls `/etcdserverpb.KV/Range`, and a misspelt or mis-shaped method would be
/// "unimplemented" to it.
final class ServiceNamesTests: XCTestCase {
    func paths(_ descriptors: [MethodDescriptor]) -> [String] { descriptors.map { "/" + $0.fullyQualifiedMethod }.sorted() }

    func testMethodPathsAreEtcds() {
        XCTAssertEqual(paths(Etcdserverpb_KV.Method.descriptors),
                       ["/etcdserverpb.KV/Compact", "/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Put", "/etcdserverpb.KV/Range", "/etcdserverpb.KV/Txn"])
        XCTAssertEqual(paths(Etcdserverpb_Watch.Method.descriptors), ["/etcdserverpb.Watch/Watch"])
        XCTAssertEqual(paths(Etcdserverpb_Lease.Method.descriptors),
                       ["/etcdserverpb.Lease/LeaseGrant", "/etcdserverpb.Lease/LeaseKeepAlive", "/etcdserverpb.Lease/LeaseLeases",
                        "/etcdserverpb.Lease/LeaseRevoke", "/etcdserverpb.Lease/LeaseTimeToLive"])
        XCTAssertEqual(paths(Etcdserverpb_Cluster.Method.descriptors),
                       ["/etcdserverpb.Cluster/MemberAdd", "/etcdserverpb.Cluster/MemberList", "/etcdserverpb.Cluster/MemberPromote",
                        "/etcdserverpb.Cluster/MemberRemove", "/etcdserverpb.Cluster/MemberUpdate"])
        XCTAssertEqual(paths(Etcdserverpb_Maintenance.Method.descriptors),
                       ["/etcdserverpb.Maintenance/Alarm", "/etcdserverpb.Maintenance/Defragment", "/etcdserverpb.Maintenance/Hash",
                        "/etcdserverpb.Maintenance/HashKV", "/etcdserverpb.Maintenance/MoveLeader", "/etcdserverpb.Maintenance/Snapshot",
                        "/etcdserverpb.Maintenance/Status"])
        XCTAssertEqual(Etcdserverpb_Auth.Method.descriptors.count, 16)
        XCTAssertTrue(paths(Etcdserverpb_Auth.Method.descriptors).contains("/etcdserverpb.Auth/UserChangePassword"))
        XCTAssertEqual(paths(Grpc_Health_V1_Health.Method.descriptors), ["/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"])
    }

    func testStreamingShapesAreEtcds() {
        XCTAssertEqual(Etcdserverpb_Watch.Method.Watch.descriptor.type, .bidirectionalStreaming)
        XCTAssertEqual(Etcdserverpb_Lease.Method.LeaseKeepAlive.descriptor.type, .bidirectionalStreaming)
        XCTAssertEqual(Etcdserverpb_Maintenance.Method.Snapshot.descriptor.type, .serverStreaming)
        XCTAssertEqual(Etcdserverpb_KV.Method.Range.descriptor.type, .unary)
    }
}
