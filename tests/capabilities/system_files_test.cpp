#include "capabilities/system_files.h"

#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>
#include <linux/magic.h>

namespace edgetrace::capabilities {
namespace {

TEST(ParseMountinfo, FindsFstypeAfterOptionalFieldsAndDecodesEscapes) {
  const std::string mountinfo =
      "31 23 0:28 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 master:3 - cgroup2 cgroup2 rw\n"
      "50 23 0:40 / /mnt/with\\040space rw - tracefs tracefs rw\n"
      "35 31 0:32 / /sys/fs/cgroup/net_cls rw - cgroup cgroup rw,net_cls,net_prio\n"
      "garbage line\n";
  const auto mounts = parse_mountinfo(mountinfo);
  ASSERT_EQ(mounts.size(), 4u);
  EXPECT_EQ(mounts[0].mount_point, "/sys/fs/cgroup");
  EXPECT_EQ(mounts[0].fstype, "tmpfs");
  EXPECT_EQ(mounts[1].mount_point, "/sys/fs/cgroup/unified");
  EXPECT_EQ(mounts[1].fstype, "cgroup2");
  EXPECT_EQ(mounts[1].super_options, "rw");
  EXPECT_EQ(mounts[2].mount_point, "/mnt/with space");
  EXPECT_EQ(mounts[2].fstype, "tracefs");
  EXPECT_EQ(mounts[3].super_options, "rw,net_cls,net_prio");
}

TEST(ParseMountinfo, RealMountTableHasRoot) {
  const auto mounts = read_mounts();
  ASSERT_FALSE(mounts.empty());
  bool root_seen = false;
  for (const auto& mount : mounts) root_seen = root_seen || mount.mount_point == "/";
  EXPECT_TRUE(root_seen);
}

TEST(ParseLockdown, ReturnsTheBracketedMode) {
  EXPECT_EQ(parse_lockdown("none [integrity] confidentiality\n"), "integrity");
  EXPECT_EQ(parse_lockdown("[none] integrity confidentiality\n"), "none");
  EXPECT_EQ(parse_lockdown("none integrity [confidentiality]"), "confidentiality");
  EXPECT_EQ(parse_lockdown("none integrity confidentiality"), std::nullopt);
  EXPECT_EQ(parse_lockdown("[]"), std::nullopt);
}

TEST(ScopedPseudoMount, MountsPrivatelyAndCleansUp) {
  std::string path;
  {
    ScopedPseudoMount securityfs("securityfs");
    ASSERT_TRUE(securityfs.mounted()) << securityfs.error();
    path = securityfs.path();
    struct statfs info {};
    ASSERT_EQ(::statfs(path.c_str(), &info), 0);
    EXPECT_EQ(static_cast<unsigned long>(info.f_type), static_cast<unsigned long>(SECURITYFS_MAGIC));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  for (const auto& mount : read_mounts()) EXPECT_NE(mount.mount_point, path);
}

TEST(ScopedPseudoMount, ReportsAnUnknownFilesystem) {
  ScopedPseudoMount bogus("no-such-filesystem");
  EXPECT_FALSE(bogus.mounted());
  EXPECT_NE(bogus.error().find("no-such-filesystem"), std::string::npos);
}

std::string cgroup2_mount() {
  for (const auto& mount : read_mounts())
    if (mount.fstype == "cgroup2") return mount.mount_point;
  return {};
}

TEST(TemporaryCgroup, CreatesAndRemovesADirectory) {
  const auto root = cgroup2_mount();
  ASSERT_FALSE(root.empty()) << "this suite needs a cgroup2 mount";
  std::string path;
  {
    TemporaryCgroup cgroup(root);
    ASSERT_TRUE(cgroup.created()) << cgroup.error();
    path = cgroup.path();
    EXPECT_TRUE(std::filesystem::exists(path + "/cgroup.procs"));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(TemporaryCgroup, ReportsAMissingParent) {
  TemporaryCgroup cgroup("/nonexistent-cgroup-root");
  EXPECT_FALSE(cgroup.created());
  EXPECT_NE(cgroup.error().find("No such file or directory"), std::string::npos) << cgroup.error();
}

}  // namespace
}  // namespace edgetrace::capabilities
