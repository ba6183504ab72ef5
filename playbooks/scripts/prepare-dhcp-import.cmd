@echo off
rem ===========================================================================
rem Prepares the DHCP configuration of old-sbs for import on new-sbs.
rem Reads C:\mig\dhcp\dhcp-old.txt (written on new-sbs by the step
rem dhcp-export-old with `netsh dhcp server \\old-sbs dump`; Windows 2000 has
rem no `netsh dhcp server export`, KB 885687) and writes
rem C:\mig\dhcp\dhcp-new.txt:
rem   - the commands address new-sbs (its address) instead of old-sbs;
rem   - option 006 (DNS servers) gives new-sbs first and old-sbs second: both
rem     answer for the domain until old-sbs is demoted (the step
rem     dhcp-dns-new-only then removes old-sbs).
rem Every other mention of old-sbs's address is listed for the operator, who
rem reviews the file in the step dhcp-review before anything is imported.
rem Names and addresses come from C:\mig\bin\customer.cmd (the step
rem customer-settings); PowerShell reads them from the environment.
rem Runs directly: it only reads and writes files on new-sbs.
rem ===========================================================================
setlocal
if not exist C:\mig\bin\customer.cmd (
    echo C:\mig\bin\customer.cmd is missing: run the step customer-settings first. 1>&2
    exit /b 1
)
call C:\mig\bin\customer.cmd
rem old-sbs's address as a findstr pattern: dots match only dots.
set OLD_RE=%MIG_OLD_IP:.=\.%
set WORK=C:\mig\dhcp
if not exist "%WORK%\dhcp-old.txt" (
    echo %WORK%\dhcp-old.txt is missing: run the step dhcp-export-old first. 1>&2
    exit /b 1
)
rem [char]34 is a double quote: a literal one would end the cmd argument.
powershell -NoProfile -NonInteractive -Command "$q = [char]34; $oldIp = $env:MIG_OLD_IP; $newIp = $env:MIG_NEW_IP; $old = [regex]::Escape($oldIp); $name = '\\\\' + [regex]::Escape($env:MIG_OLD) + '(\.' + [regex]::Escape($env:MIG_DOMAIN) + ')?'; $t = Get-Content 'C:\mig\dhcp\dhcp-old.txt'; $t = $t -replace ('^Dhcp Server (' + $old + '|' + $name + ') '), ('Dhcp Server ' + $newIp + ' '); $t = $t | ForEach-Object { if ($_ -match 'optionvalue 6 ') { $_ -replace ($q + $old + $q), ($q + $newIp + $q + ' ' + $q + $oldIp + $q) } else { $_ } }; Set-Content -Path 'C:\mig\dhcp\dhcp-new.txt' -Value $t -Encoding ASCII"
if errorlevel 1 exit /b 1
echo Option 006 (DNS servers) in dhcp-new.txt:
findstr /i /c:"optionvalue 6 " "%WORK%\dhcp-new.txt"
echo Lines of dhcp-new.txt that still mention %MIG_OLD_IP% (review them):
findstr /n /r /c:"%OLD_RE%[^0-9]" /c:"%OLD_RE%$" "%WORK%\dhcp-new.txt"
findstr /i /c:"add scope" "%WORK%\dhcp-new.txt" >nul
if errorlevel 1 (
    echo dhcp-new.txt defines no scope: the dump from old-sbs is empty or unreadable. 1>&2
    exit /b 1
)
exit /b 0
